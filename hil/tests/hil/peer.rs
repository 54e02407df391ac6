//! The official ROBOTIS SDK (`dynamixel-sdk`, Python) drives `hil emulate` exactly as it would
//! a real servo. The script is `tests/peer/sdk_client.py`; its pinned requirement is
//! `tests/peer/requirements.txt`, installed by `.ci/run`.

use std::process::Command;

use super::bench::Emulator;

#[test]
fn the_robotis_sdk_drives_the_emulator() {
    // Goal: protocol compatibility with the vendor's own client, not only with our codec.
    // Method: run the SDK script against a fresh emulator with two servos; it pings (again
    // after a truncated packet and a silence: the emulator resynchronises), reads and writes
    // registers, moves ID 1 in position mode while reading Present Position, and uses
    // sync write and sync/fast sync read; it prints "ok" last and exits 0. Missing Python or a
    // missing SDK is a failure that says how to install it.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer/sdk_client.py");
    let requirements = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer/requirements.txt");
    let probe = Command::new("python3")
        .args(["-c", "import dynamixel_sdk"])
        .output();
    match probe {
        Err(e) => panic!(
            "python3 not found ({e}); install Python 3, then: python3 -m pip install -r {requirements}"
        ),
        Ok(out) if !out.status.success() => panic!(
            "the ROBOTIS SDK is not installed: python3 -m pip install -r {requirements}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => {}
    }
    let emulator = Emulator::start(&["--id", "1", "--id", "2"]);
    let output = Command::new("python3")
        .arg(script)
        .arg(&emulator.path)
        .output()
        .expect("run python3");
    let summary = emulator.stop();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK script failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.lines().last(), Some("ok"), "{stdout}");
    assert_eq!(
        summary["servos"][0]["torque_enabled"], false,
        "the script turns torque off at the end"
    );
}
