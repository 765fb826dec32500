"""OPC UA client driver: subscriptions (monitored items) or batched polling, secured sessions."""
