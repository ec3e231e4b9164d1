"""Workers of the shipped pipelines.

Each is a plain class following the contract in ``engine.contract``: it knows
nothing about threads, queues or pills.
"""
