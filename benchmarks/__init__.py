"""Benchmarks: the client against raw aiohttp (its floor) and what users would pick instead."""
