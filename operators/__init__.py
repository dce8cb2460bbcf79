"""audienceflow.operators"""
