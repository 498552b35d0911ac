-- crm_delivery_logs: where the app records delivery attempts and the providers' answers, its webhook included
-- (shared notes crm-schema.md, "What the production app does"). communication_id is nullable here: the webhook also
-- logs statuses Meta reports for messages that are none of the app's communications (a rotation's test message).
CREATE TABLE IF NOT EXISTS crm_delivery_logs (
    log_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    communication_id UUID REFERENCES crm_communications(communication_id) ON DELETE CASCADE,
    channel VARCHAR(20) NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp')),
    attempt_number INTEGER DEFAULT 1,
    api_provider VARCHAR(50),
    api_request JSONB,
    api_response JSONB,
    status_code INTEGER,
    success BOOLEAN DEFAULT false,
    error_details TEXT,
    delivery_time_ms INTEGER,
    created_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_crm_delivery_logs_communication ON crm_delivery_logs (communication_id);
CREATE INDEX IF NOT EXISTS idx_crm_delivery_logs_created_at ON crm_delivery_logs (created_at);
