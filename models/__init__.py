"""audienceflow.models"""
