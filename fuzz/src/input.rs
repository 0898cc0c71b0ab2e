//! Structured values cut from the fuzzer's bytes: a reader that never fails, answering zeros
//! once the bytes run out, so every byte string is a valid input.

pub struct Bytes<'a> {
    rest: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, rest)) => {
                self.rest = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn f64(&mut self) -> f64 {
        let mut b = [0u8; 8];
        b.iter_mut().for_each(|x| *x = self.u8());
        f64::from_le_bytes(b)
    }

    /// The rest, read as text (invalid UTF-8 replaced, as a server reading a body would refuse
    /// or replace it before these functions see it).
    pub fn text(self) -> String {
        String::from_utf8_lossy(self.rest).into_owned()
    }
}

/// The whole input as text.
pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}
