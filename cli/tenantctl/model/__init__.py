"""Clients file -> validated model -> desired state. Pure: no I/O beyond reading the clients file."""

from tenantctl.model.loader import load_model, model_from_text, resolve_clients_file
from tenantctl.model.types import Cluster, Model, Settings, Tenant, Tier

__all__ = ["Cluster", "Model", "Settings", "Tenant", "Tier", "load_model", "model_from_text",
           "resolve_clients_file"]
