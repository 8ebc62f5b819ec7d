"""Switchboard: coding agents on one machine or many find each other and talk."""

__version__ = "0.1.0"
