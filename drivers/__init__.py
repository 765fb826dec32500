"""Protocol drivers: one folder per protocol; only driver.py files import protocol libraries."""
