"""The DRPC wire format, byte for byte as Go's ``storj.io/drpc`` writes and reads it.

A frame is a control byte (kind, done and control bits), then the stream id, the message id and
the data length as varints, then the data. A packet is the run of frames with one id that ends
with a ``done`` frame. ``Packet.encode(split_size)`` writes a packet as Go's writer does;
``PacketReader`` joins received bytes into packets under Go's reader rules and its size limit;
``parse_frame`` reads a single frame.

Frame kinds are ``int``: 1 Invoke, 2 Message, 3 Error, 4 Cancel, 5 Close, 6 CloseSend,
7 InvokeMetadata, 8 WindowUpdate (the credit of the cockroachdb fork of DRPC), and in
weir's mux mode 9 Ping and 10 Pong.

Malformed bytes raise ``weir.RemoteProtocolError`` with Go's text for the fault.
"""

from weir._weir import (
    DEFAULT_MAX_PACKET_LEN,
    DEFAULT_SPLIT_SIZE,
    Frame,
    Packet,
    PacketReader,
    parse_frame,
)

__all__ = [
    "DEFAULT_MAX_PACKET_LEN",
    "DEFAULT_SPLIT_SIZE",
    "Frame",
    "Packet",
    "PacketReader",
    "parse_frame",
]
