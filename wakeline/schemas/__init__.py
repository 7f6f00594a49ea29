"""Avro schemas (``*.avsc``) of wakeline's topics and their Python mirrors."""

from wakeline.schemas.codec import DecodeError, command_codec, event_codec, notice_codec

__all__ = ["DecodeError", "command_codec", "event_codec", "notice_codec"]
