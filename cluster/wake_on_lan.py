"""Wake-on-LAN: how the controller wakes a suspended or powered-off Jetson (its MAC address is in the inventory).

The magic packet is 6 bytes of 0xFF followed by the MAC address 16 times, sent as a UDP broadcast (port 9).
It is the one power-state action not taken by the device actor: a sleeping device cannot take it.
"""

from __future__ import annotations

import socket

from jetfleet.errors import ConfigError


def magic_packet(mac: str) -> bytes:
    """The Wake-on-LAN packet for `mac` ("00:04:4b:aa:bb:cc" or with dashes)."""
    digits = mac.replace(":", "").replace("-", "")
    if len(digits) != 12:
        raise ConfigError(f"not a MAC address: {mac!r}")
    try:
        address = bytes.fromhex(digits)
    except ValueError:
        raise ConfigError(f"not a MAC address: {mac!r}") from None
    return b"\xff" * 6 + address * 16


def send_wake_on_lan(mac: str, *, broadcast: str = "255.255.255.255", port: int = 9) -> None:
    """Broadcast the magic packet for `mac`."""
    packet = magic_packet(mac)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.sendto(packet, (broadcast, port))
