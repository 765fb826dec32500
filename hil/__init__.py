"""Hardware-in-the-loop: firmware stubs on real protocol servers, real brokers and databases."""
