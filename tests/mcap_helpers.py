"""Writing small MCAP files with the real ``mcap`` writer, for tests that need exact record layouts."""

from __future__ import annotations

from pathlib import Path

from mcap.writer import CompressionType, Writer


def write_mcap(
    path: Path,
    messages: list[tuple[str, str, int, bytes]],
    *,
    chunk_size: int = 1024 * 1024,
    compression: CompressionType = CompressionType.ZSTD,
) -> Path:
    """Write (topic, schema_name, log_time, payload) with the real mcap writer, in the given order."""
    with open(path, "wb") as f:
        writer = Writer(f, chunk_size=chunk_size, compression=compression)
        writer.start(profile="owa", library="test")
        schema_ids: dict[str, int] = {}
        channel_ids: dict[tuple[str, str], int] = {}
        for topic, schema_name, log_time, payload in messages:
            if schema_name not in schema_ids:
                schema_ids[schema_name] = writer.register_schema(schema_name, "jsonschema", b"{}")
            if (topic, schema_name) not in channel_ids:
                channel_ids[(topic, schema_name)] = writer.register_channel(topic, "json", schema_ids[schema_name])
            writer.add_message(channel_ids[(topic, schema_name)], log_time, payload, log_time)
        writer.finish()
    return path
