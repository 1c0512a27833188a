"""Prefect flows (thin tasks over flows.steps) and the sweepflow command line."""
