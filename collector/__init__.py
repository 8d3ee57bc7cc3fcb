"""The collector: every interval, fetch every pair's price from every exchange and write them."""
