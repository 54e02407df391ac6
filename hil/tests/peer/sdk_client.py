"""Drives `hil emulate` with the official ROBOTIS DynamixelSDK, as a bench script would drive a
real XM430-W350. Usage: sdk_client.py DEVICE. Exits non-zero with a message on the first
mismatch; prints "ok" last when everything held."""

import sys
import time

from dynamixel_sdk import (COMM_SUCCESS, GroupSyncRead, GroupSyncWrite, PacketHandler,
                           PortHandler)

BAUD = 1000000
MODEL_XM430_W350 = 1020
ADDR_OPERATING_MODE = 11
ADDR_TORQUE_ENABLE = 64
ADDR_GOAL_POSITION = 116
ADDR_PRESENT_POSITION = 132
ADDR_GOAL_CURRENT = 102
READ_ATTEMPTS_MAX = 3
# Silence after a truncated packet: five times the emulator's 20 ms inter-byte timeout.
TRUNCATED_PACKET_SILENCE_S = 0.1


def check(what, result, error=0):
    if result != COMM_SUCCESS:
        sys.exit(f"{what}: communication result {result}")
    if error != 0:
        sys.exit(f"{what}: status error {error}")


def main():
    port = PortHandler(sys.argv[1])
    packet = PacketHandler(2.0)
    if not port.openPort() or not port.setBaudRate(BAUD):
        sys.exit("cannot open the emulator's port")

    for dxl_id in (1, 2):
        model, result, error = packet.ping(port, dxl_id)
        check(f"ping {dxl_id}", result, error)
        if model != MODEL_XM430_W350:
            sys.exit(f"ID {dxl_id} reports model {model}, expected {MODEL_XM430_W350}")
    _, result, _ = packet.ping(port, 3)
    if result == COMM_SUCCESS:
        sys.exit("ID 3 answered but is not on the bus")

    # A truncated packet (a header announcing 300 bytes that never come) must not deafen the
    # bus: after an idle gap longer than the inter-byte timeout, the SDK's ping is answered.
    port.writePort([0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x2C, 0x01])
    time.sleep(TRUNCATED_PACKET_SILENCE_S)
    model, result, error = packet.ping(port, 1)
    check("ping after a truncated packet", result, error)

    # EEPROM is locked while torque is on: the SDK sees the Access error (7).
    check("torque on", *packet.write1ByteTxRx(port, 1, ADDR_TORQUE_ENABLE, 1))
    result, error = packet.write1ByteTxRx(port, 1, ADDR_OPERATING_MODE, 0)
    if result != COMM_SUCCESS or error != 7:
        sys.exit(f"EEPROM write with torque on: expected access error 7, got {result}/{error}")
    torque, result, error = packet.read1ByteTxRx(port, 1, ADDR_TORQUE_ENABLE)
    check("read torque", result, error)
    if torque != 1:
        sys.exit(f"torque enable reads {torque}")

    # Position mode (the factory default): move ID 1 and watch Present Position follow.
    start, result, error = packet.read4ByteTxRx(port, 1, ADDR_PRESENT_POSITION)
    check("read position", result, error)
    goal = start + 1024  # a quarter turn
    check("goal position", *packet.write4ByteTxRx(port, 1, ADDR_GOAL_POSITION, goal))
    positions = []
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        position, result, error = packet.read4ByteTxRx(port, 1, ADDR_PRESENT_POSITION)
        if result == COMM_SUCCESS and error == 0:
            positions.append(position)
            if abs(position - goal) < 20:
                break
        time.sleep(0.05)
    if not positions or abs(positions[-1] - goal) >= 20:
        sys.exit(f"ID 1 did not reach {goal} from {start}: last readings {positions[-5:]}")
    if len(set(positions)) < 3:
        sys.exit(f"Present Position did not move while reading: {positions}")

    # Sync write goal current to both (mode change needs torque off), sync and fast sync read.
    sync = GroupSyncWrite(port, packet, ADDR_TORQUE_ENABLE, 1)
    for dxl_id in (1, 2):
        sync.addParam(dxl_id, [0])
    check("sync write torque off", sync.txPacket())
    for dxl_id in (1, 2):
        check(f"current mode {dxl_id}", *packet.write1ByteTxRx(port, dxl_id, ADDR_OPERATING_MODE, 0))
    currents = GroupSyncWrite(port, packet, ADDR_GOAL_CURRENT, 2)
    currents.addParam(1, [100, 0])
    currents.addParam(2, [0x9C, 0xFF])  # -100
    check("sync write goal current", currents.txPacket())
    for fast in (False, True):
        reader = GroupSyncRead(port, packet, ADDR_GOAL_CURRENT, 2)
        for dxl_id in (1, 2):
            reader.addParam(dxl_id)
        for _ in range(READ_ATTEMPTS_MAX):
            result = reader.fastSyncRead() if fast else reader.txRxPacket()
            if result == COMM_SUCCESS:
                break
        check(f"sync read (fast={fast})", result)
        got = [reader.getData(dxl_id, ADDR_GOAL_CURRENT, 2) for dxl_id in (1, 2)]
        if got != [100, 0xFF9C]:
            sys.exit(f"sync read (fast={fast}) returned {got}")

    check("torque off", *packet.write1ByteTxRx(port, 1, ADDR_TORQUE_ENABLE, 0))
    port.closePort()
    print("ok")


if __name__ == "__main__":
    main()
