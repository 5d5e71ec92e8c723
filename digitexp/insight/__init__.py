"""Insight: is a difference between variants real, and why does a variant win?"""
