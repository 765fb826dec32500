"""IEC 60870-5-104 client: pure codec and link rules, asyncio driver (interrogation + spontaneous data)."""
