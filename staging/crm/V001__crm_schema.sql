-- CRM Communication Engine schema, as the app's migrations define it (see shared notes crm-schema.md).
-- Version 001. Reproduced faithfully for staging; the app's inline INDEX declarations (rejected by PostgreSQL)
-- are written here as CREATE INDEX statements.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE OR REPLACE FUNCTION encrypt_sensitive_data(data TEXT, encryption_key TEXT)
RETURNS BYTEA AS $$
BEGIN
    RETURN pgp_sym_encrypt(data, encryption_key);
END;
$$ LANGUAGE plpgsql IMMUTABLE;

CREATE OR REPLACE FUNCTION decrypt_sensitive_data(encrypted_data BYTEA, encryption_key TEXT)
RETURNS TEXT AS $$
BEGIN
    RETURN pgp_sym_decrypt(encrypted_data, encryption_key);
END;
$$ LANGUAGE plpgsql IMMUTABLE;

CREATE OR REPLACE FUNCTION update_updated_at_column()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- The app's event plans, referenced by crm_communications.plan_id.
CREATE TABLE IF NOT EXISTS event_plans (
    plan_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS crm_client_preferences (
    client_id VARCHAR(255) PRIMARY KEY,
    preferred_channels JSONB DEFAULT '["email"]',
    timezone VARCHAR(50) DEFAULT 'UTC',
    quiet_hours_start TIME,
    quiet_hours_end TIME,
    opt_out_email BOOLEAN DEFAULT false,
    opt_out_sms BOOLEAN DEFAULT false,
    opt_out_whatsapp BOOLEAN DEFAULT false,
    language_preference VARCHAR(10) DEFAULT 'en',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    email_encrypted BYTEA,
    phone_number_encrypted BYTEA,
    full_name_encrypted BYTEA,
    data_retention_until TIMESTAMPTZ,
    deletion_requested_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    deletion_reason TEXT,
    opt_out_timestamp TIMESTAMPTZ,
    opt_out_ip_address INET,
    opt_out_user_agent TEXT
);

-- The app's migrations define two BEFORE UPDATE triggers on this table (crm-schema.md, "What the production app
-- does"): each sets updated_at = now() on every UPDATE, whatever changed.
DROP TRIGGER IF EXISTS update_crm_client_preferences_updated_at ON crm_client_preferences;
CREATE TRIGGER update_crm_client_preferences_updated_at
    BEFORE UPDATE ON crm_client_preferences
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE OR REPLACE FUNCTION update_crm_client_preferences_timestamp()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS trigger_update_crm_client_preferences_timestamp ON crm_client_preferences;
CREATE TRIGGER trigger_update_crm_client_preferences_timestamp
    BEFORE UPDATE ON crm_client_preferences
    FOR EACH ROW EXECUTE FUNCTION update_crm_client_preferences_timestamp();

CREATE TABLE IF NOT EXISTS crm_communications (
    communication_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    plan_id UUID REFERENCES event_plans(plan_id),
    client_id VARCHAR(255) NOT NULL,
    message_type VARCHAR(50) NOT NULL,
    channel VARCHAR(20) NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp')),
    urgency VARCHAR(20) DEFAULT 'normal',
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'delivered', 'opened', 'clicked', 'failed', 'bounced')),
    subject TEXT,
    body TEXT NOT NULL,
    template_name VARCHAR(100),
    context_data JSONB,
    metadata JSONB,
    sent_at TIMESTAMPTZ,
    delivered_at TIMESTAMPTZ,
    opened_at TIMESTAMPTZ,
    clicked_at TIMESTAMPTZ,
    failed_at TIMESTAMPTZ,
    error_message TEXT,
    retry_count INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_crm_communications_client_id ON crm_communications (client_id);
CREATE INDEX IF NOT EXISTS idx_crm_communications_status ON crm_communications (status);
CREATE INDEX IF NOT EXISTS idx_crm_communications_channel ON crm_communications (channel);
CREATE INDEX IF NOT EXISTS idx_crm_communications_created_at ON crm_communications (created_at);
CREATE INDEX IF NOT EXISTS idx_crm_communications_sent_at ON crm_communications (sent_at);

CREATE TABLE IF NOT EXISTS crm_data_access_log (
    log_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id VARCHAR(255) NOT NULL,
    access_type VARCHAR(50) NOT NULL CHECK (access_type IN ('read', 'write', 'delete', 'export')),
    accessed_by VARCHAR(255) NOT NULL,
    access_timestamp TIMESTAMPTZ DEFAULT NOW(),
    ip_address INET,
    user_agent TEXT,
    data_fields JSONB,
    purpose TEXT
);
CREATE INDEX IF NOT EXISTS idx_crm_data_access_log_client ON crm_data_access_log (client_id, access_timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_crm_data_access_log_type ON crm_data_access_log (access_type, access_timestamp DESC);

CREATE TABLE IF NOT EXISTS security_credential_rotations (
    rotation_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    credential_type VARCHAR(100) NOT NULL,
    rotated_at TIMESTAMPTZ DEFAULT NOW(),
    rotated_by VARCHAR(255) NOT NULL,
    previous_key_hash VARCHAR(255),
    rotation_reason TEXT,
    next_rotation_due TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_security_credential_rotations_type ON security_credential_rotations (credential_type);
CREATE INDEX IF NOT EXISTS idx_security_credential_rotations_rotated_at ON security_credential_rotations (rotated_at);

CREATE TABLE IF NOT EXISTS security_api_credentials (
    credential_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    service_name VARCHAR(100) UNIQUE NOT NULL CHECK (service_name IN ('whatsapp', 'twilio', 'smtp')),
    credential_key_encrypted BYTEA NOT NULL,
    credential_metadata JSONB,
    is_active BOOLEAN DEFAULT true,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    expires_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    rotation_interval_days INTEGER DEFAULT 90
);

-- credential_key_encrypted is encrypted by the app in Python with Fernet, keyed by
-- urlsafe_b64encode(sha256(DB_ENCRYPTION_KEY)) (encrypt_api_credential). Whenever it changes, the app's trigger logs
-- a rotation under the row's service_name ('whatsapp', 'twilio', 'smtp'), as current_user, with the SHA-256 of the
-- old ciphertext (crm-schema.md, "What the production app does").
CREATE OR REPLACE FUNCTION track_credential_rotation()
RETURNS TRIGGER AS $$
BEGIN
    IF OLD.credential_key_encrypted IS DISTINCT FROM NEW.credential_key_encrypted THEN
        INSERT INTO security_credential_rotations (credential_type, rotated_by, previous_key_hash, rotation_reason,
                                                   next_rotation_due)
        VALUES (
            NEW.service_name,
            current_user,
            encode(digest(OLD.credential_key_encrypted, 'sha256'), 'hex'),
            'Credential updated',
            NOW() + make_interval(days => COALESCE(NEW.rotation_interval_days, 90))
        );
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS trigger_track_credential_rotation ON security_api_credentials;
CREATE TRIGGER trigger_track_credential_rotation
    AFTER UPDATE ON security_api_credentials
    FOR EACH ROW EXECUTE FUNCTION track_credential_rotation();

CREATE OR REPLACE VIEW security_credential_status AS
SELECT
    c.service_name,
    c.is_active,
    c.updated_at AS last_rotated_at,
    c.updated_at + make_interval(days => c.rotation_interval_days) AS next_rotation_due,
    CASE
        WHEN c.expires_at IS NOT NULL AND c.expires_at < NOW() THEN 'EXPIRED'
        WHEN c.updated_at + make_interval(days => c.rotation_interval_days) < NOW() THEN 'OVERDUE'
        WHEN c.updated_at + make_interval(days => c.rotation_interval_days) < NOW() + INTERVAL '7 days' THEN 'DUE_SOON'
        ELSE 'CURRENT'
    END AS status
FROM security_api_credentials c;
