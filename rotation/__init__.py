"""rotation-runbook: the CRM credential-rotation runbook as executable, auditable procedures."""

__version__ = "0.1.0"
