"""Provider adapters for the rotated API credentials: Twilio, WhatsApp (Meta Graph API) and SMTP."""
