"""Siemens S7 (S7comm over ISO-on-TCP) driver."""
