"""audienceflow.flows"""
