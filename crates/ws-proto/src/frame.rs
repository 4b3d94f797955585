//! Frame headers (RFC 6455 §5.2): parsing with every rule checked, and encoding.

use crate::error::ProtocolError;

/// A frame opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continuation of a fragmented message.
    Continuation,
    /// 0x1: first frame of a text message.
    Text,
    /// 0x2: first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decodes the 4-bit opcode; reserved values (0x3–0x7, 0xB–0xF) are `None`.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// RSV1, the bit permessage-deflate uses to mark a compressed message.
pub const RSV1: u8 = 0x40;
/// RSV2.
pub const RSV2: u8 = 0x20;
/// RSV3.
pub const RSV3: u8 = 0x10;

/// The longest header: 2 bytes, 8 bytes of extended length, 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: last frame of a message.
    pub fin: bool,
    /// RSV1–RSV3 as they sit in the first byte (mask [`RSV1`] | [`RSV2`] | [`RSV3`]).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, when MASK is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// `Ok(None)` when more bytes are needed; otherwise the header and its length in bytes.
    /// Checks done here, before any payload byte is looked at: reserved opcodes (1002), the
    /// 64-bit length's most significant bit (1002), minimal length encoding (1002), control
    /// frames that are fragmented or longer than 125 bytes (1002). RSV bits and the mask
    /// direction depend on the connection and are checked by it.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let b0 = buf[0];
        let b1 = buf[1];
        let fin = b0 & 0x80 != 0;
        let rsv = b0 & (RSV1 | RSV2 | RSV3);
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if len7 > 125 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        }
        let ext_len = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + ext_len + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(None);
        }
        let payload_len = match len7 {
            126 => {
                let v = u16::from_be_bytes([buf[2], buf[3]]) as u64;
                if v < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                v
            }
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let v = u64::from_be_bytes(b);
                if v >> 63 != 0 {
                    return Err(ProtocolError::LengthMsbSet);
                }
                if v <= 0xFFFF {
                    return Err(ProtocolError::NonMinimalLength);
                }
                v
            }
            n => n as u64,
        };
        let mask = if masked {
            let o = 2 + ext_len;
            Some([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]])
        } else {
            None
        };
        Ok(Some((FrameHeader { fin, rsv, opcode, mask, payload_len }, header_len)))
    }

    /// Encodes this header into `out`, returning the number of bytes written (2 to 14).
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (if self.fin { 0x80 } else { 0 }) | (self.rsv & 0x70) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = 2;
        if self.payload_len < 126 {
            out[1] = mask_bit | self.payload_len as u8;
        } else if self.payload_len <= 0xFFFF {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
            n = 4;
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            n = 10;
        }
        if let Some(m) = self.mask {
            out[n..n + 4].copy_from_slice(&m);
            n += 4;
        }
        n
    }

    /// The encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        let base = match self.payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        base + if self.mask.is_some() { 4 } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader { fin: true, rsv: 0, opcode, mask, payload_len: len }
    }

    #[test]
    fn encode_parse_roundtrip_at_length_boundaries() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 32, (1 << 63) - 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = hdr(OpCode::Binary, len, mask);
                let mut b = [0u8; MAX_HEADER_LEN];
                let n = h.encode(&mut b);
                assert_eq!(n, h.encoded_len());
                assert_eq!(FrameHeader::parse(&b[..n]), Ok(Some((h, n))), "len {len}");
                // One byte short is "need more", never an error.
                assert_eq!(FrameHeader::parse(&b[..n - 1]), Ok(None));
            }
        }
    }

    #[test]
    fn f5_reserved_opcodes() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(FrameHeader::parse(&[0x80 | op, 0x80, 0, 0, 0, 0]), Err(ProtocolError::ReservedOpcode(op)));
        }
    }

    #[test]
    fn f6_f7_control_frame_rules() {
        // Ping with 126-byte length.
        assert_eq!(FrameHeader::parse(&[0x89, 126, 0, 126]), Err(ProtocolError::ControlFrameTooLong));
        assert_eq!(FrameHeader::parse(&[0x88, 127]), Err(ProtocolError::ControlFrameTooLong));
        assert_eq!(FrameHeader::parse(&[0x8A, 126]), Err(ProtocolError::ControlFrameTooLong));
        // Ping and pong with FIN=0.
        assert_eq!(FrameHeader::parse(&[0x09, 0]), Err(ProtocolError::FragmentedControlFrame));
        assert_eq!(FrameHeader::parse(&[0x0A, 0]), Err(ProtocolError::FragmentedControlFrame));
        // 125 is fine.
        assert!(matches!(FrameHeader::parse(&[0x89, 125]), Ok(Some(_))));
    }

    #[test]
    fn f10_length_msb_and_minimal_encoding() {
        let mut b = vec![0x82, 127];
        b.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(FrameHeader::parse(&b), Err(ProtocolError::LengthMsbSet));
        let mut b = vec![0x82, 127];
        b.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(FrameHeader::parse(&b), Err(ProtocolError::LengthMsbSet));
        assert_eq!(FrameHeader::parse(&[0x82, 126, 0, 125]), Err(ProtocolError::NonMinimalLength));
        let mut b = vec![0x82, 127];
        b.extend_from_slice(&65535u64.to_be_bytes());
        assert_eq!(FrameHeader::parse(&b), Err(ProtocolError::NonMinimalLength));
    }

    #[test]
    fn rsv_bits_are_reported() {
        let (h, _) = FrameHeader::parse(&[0x80 | RSV1 | RSV3 | 0x1, 0])
            .ok()
            .flatten()
            .unwrap_or((hdr(OpCode::Close, 0, None), 0));
        assert_eq!(h.rsv, RSV1 | RSV3);
        assert_eq!(h.opcode, OpCode::Text);
    }
}
