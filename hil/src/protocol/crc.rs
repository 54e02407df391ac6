//! CRC-16 of Dynamixel Protocol 2.0: CRC-16/UMTS (polynomial 0x8005, initial value 0, not
//! reflected, no final XOR). Owns the checksum only; where it is computed over (the stuffed
//! bytes from the header to the last parameter) is the packet module's business.

use crc::{CRC_16_UMTS, Crc};

const DYNAMIXEL_CRC: Crc<u16> = Crc::<u16>::new(&CRC_16_UMTS);

/// The Dynamixel CRC of `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    DYNAMIXEL_CRC.checksum(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_of_the_catalogue() {
        // Goal: the algorithm is CRC-16/UMTS. Method: the catalogue's check value over "123456789".
        assert_eq!(crc16(b"123456789"), 0xFEE8);
    }

    #[test]
    fn matches_the_sdk_table_loop() {
        // Goal: agree with the ROBOTIS SDK's table-driven updateCRC(). Method: rebuild its table
        // from the polynomial, run its loop over a few byte strings and compare.
        let mut table = [0u16; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let mut crc = (i as u16) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x8005
                } else {
                    crc << 1
                };
            }
            *entry = crc;
        }
        for bytes in [
            &b""[..],
            &[0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x03, 0x00, 0x01][..],
            &[0xAB; 300][..],
        ] {
            let mut crc = 0u16;
            for &b in bytes {
                let i = usize::from(((crc >> 8) ^ u16::from(b)) & 0xFF);
                crc = (crc << 8) ^ table[i];
            }
            assert_eq!(crc16(bytes), crc);
        }
    }
}
