"""tenantctl: many SaaS tenants on shared and dedicated Aurora PostgreSQL clusters."""

__version__ = "0.1.0"
