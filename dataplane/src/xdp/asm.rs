//! A small BPF assembler: instruction encoding (the kernel's `struct bpf_insn`) and forward
//! jumps to named labels, resolved when the program is finished.

use std::collections::HashMap;

/// One BPF instruction as the kernel reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Signed offset (memory access or jump).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

/// A BPF register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

/// Return value / helper result.
pub const R0: Reg = Reg(0);
/// First argument (the context on entry).
pub const R1: Reg = Reg(1);
/// Second argument.
pub const R2: Reg = Reg(2);
/// Third argument.
pub const R3: Reg = Reg(3);
/// Fourth argument.
pub const R4: Reg = Reg(4);
/// Fifth argument.
pub const R5: Reg = Reg(5);
/// Callee-saved.
pub const R6: Reg = Reg(6);
/// Callee-saved.
pub const R7: Reg = Reg(7);
/// Callee-saved.
pub const R8: Reg = Reg(8);
/// Callee-saved.
pub const R9: Reg = Reg(9);
/// Frame pointer (read-only).
pub const R10: Reg = Reg(10);

// Instruction classes and fields (include/uapi/linux/bpf_common.h, bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const STX: u8 = 0x03;
const ALU64: u8 = 0x07;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const K: u8 = 0x00;
const X: u8 = 0x08;
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
const DW: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;

/// Memory access width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 1 byte.
    B = 0x10,
    /// 2 bytes.
    H = 0x08,
    /// 4 bytes.
    W = 0x00,
    /// 8 bytes.
    DW = 0x18,
}

/// 64-bit ALU operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alu {
    /// dst += src
    Add = 0x00,
    /// dst -= src
    Sub = 0x10,
    /// dst &= src
    And = 0x50,
    /// dst <<= src
    Lsh = 0x60,
    /// dst >>= src
    Rsh = 0x70,
    /// dst = src
    Mov = 0xb0,
}

/// Jump conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// ==
    Eq = 0x10,
    /// > (unsigned)
    Gt = 0x20,
    /// >= (unsigned)
    Ge = 0x30,
    /// & != 0
    Set = 0x40,
    /// !=
    Ne = 0x50,
}

/// Kernel helper functions used by the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helper {
    /// `bpf_map_lookup_elem`.
    MapLookupElem = 1,
    /// `bpf_redirect_map`.
    RedirectMap = 51,
}

/// A program under construction. Jumps name labels; `finish` resolves them.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: HashMap<String, usize>,
    fixups: Vec<(usize, String)>,
}

/// Why a program could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    /// A jump names a label that was never placed.
    #[error("undefined label {0:?}")]
    UndefinedLabel(String),
    /// A label was placed twice.
    #[error("label {0:?} defined twice")]
    DuplicateLabel(String),
    /// A jump is too far for the 16-bit offset, or goes backwards (BPF loops are refused).
    #[error("jump to {0:?} out of range or backwards")]
    BadJump(String),
}

fn regs(dst: Reg, src: Reg) -> u8 {
    (src.0 << 4) | (dst.0 & 0x0f)
}

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn {
            code,
            regs: regs(dst, src),
            off,
            imm,
        });
        self
    }

    /// `dst op= imm` (64-bit).
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU64 | op as u8 | K, dst, R0, 0, imm)
    }

    /// `dst op= src` (64-bit).
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) -> &mut Self {
        self.push(ALU64 | op as u8 | X, dst, src, 0, 0)
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(LDX | MEM | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(STX | MEM | size as u8, dst, src, off, 0)
    }

    /// Loads a map file descriptor into `dst` (a two-slot `ld_imm64` the kernel rewrites to the
    /// map's address).
    pub fn load_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Self {
        self.push(LD | IMM | DW, dst, Reg(PSEUDO_MAP_FD), 0, fd);
        self.push(0, R0, R0, 0, 0)
    }

    /// `if dst cond imm goto label`.
    pub fn jmp_imm(&mut self, cond: Cond, dst: Reg, imm: i32, label: &str) -> &mut Self {
        self.fixups.push((self.insns.len(), label.to_string()));
        self.push(JMP | cond as u8 | K, dst, R0, 0, imm)
    }

    /// `if (u32)dst cond (u32)imm goto label`: compares the low 32 bits, so constants with the
    /// top bit set (IPv4 addresses, byte-swapped words) compare as intended.
    pub fn jmp32_imm(&mut self, cond: Cond, dst: Reg, imm: u32, label: &str) -> &mut Self {
        self.fixups.push((self.insns.len(), label.to_string()));
        self.push(JMP32 | cond as u8 | K, dst, R0, 0, imm as i32)
    }

    /// `if dst cond src goto label`.
    pub fn jmp_reg(&mut self, cond: Cond, dst: Reg, src: Reg, label: &str) -> &mut Self {
        self.fixups.push((self.insns.len(), label.to_string()));
        self.push(JMP | cond as u8 | X, dst, src, 0, 0)
    }

    /// `goto label`.
    pub fn ja(&mut self, label: &str) -> &mut Self {
        self.fixups.push((self.insns.len(), label.to_string()));
        self.push(JMP, R0, R0, 0, 0)
    }

    /// Calls a kernel helper.
    pub fn call(&mut self, helper: Helper) -> &mut Self {
        self.push(JMP | 0x80, R0, R0, 0, helper as i32)
    }

    /// Returns `r0`.
    pub fn exit(&mut self) -> &mut Self {
        self.push(JMP | 0x90, R0, R0, 0, 0)
    }

    /// Places `name` at the next instruction.
    pub fn label(&mut self, name: &str) -> Result<&mut Self, AsmError> {
        if self
            .labels
            .insert(name.to_string(), self.insns.len())
            .is_some()
        {
            return Err(AsmError::DuplicateLabel(name.to_string()));
        }
        Ok(self)
    }

    /// Resolves jumps and returns the instructions.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for (at, name) in &self.fixups {
            let target = *self
                .labels
                .get(name)
                .ok_or_else(|| AsmError::UndefinedLabel(name.clone()))?;
            let off = target as i64 - *at as i64 - 1;
            if off < 0 || off > i64::from(i16::MAX) {
                return Err(AsmError::BadJump(name.clone()));
            }
            self.insns[*at].off = off as i16;
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_kernel_headers() {
        let mut a = Asm::new();
        a.alu_imm(Alu::Mov, R0, 2).exit();
        let p = a.finish().unwrap();
        // BPF_MOV64_IMM(BPF_REG_0, 2) = { 0xb7, 0x00, 0, 2 }; BPF_EXIT_INSN() = { 0x95, ... }
        assert_eq!(
            p[0],
            Insn {
                code: 0xb7,
                regs: 0,
                off: 0,
                imm: 2
            }
        );
        assert_eq!(p[1].code, 0x95);
        let mut a = Asm::new();
        a.load(Size::W, R2, R1, 4).store(Size::H, R10, -2, R3);
        let p = a.finish().unwrap();
        assert_eq!((p[0].code, p[0].regs, p[0].off), (0x61, 0x12, 4));
        assert_eq!((p[1].code, p[1].regs, p[1].off), (0x6b, 0x3a, -2));
    }

    #[test]
    fn labels_resolve_forward_only() {
        let mut a = Asm::new();
        a.jmp_imm(Cond::Eq, R1, 0, "out");
        a.alu_imm(Alu::Mov, R0, 1);
        a.label("out").unwrap();
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(p[0].off, 1);

        let mut a = Asm::new();
        a.label("back").unwrap();
        a.ja("back");
        assert_eq!(a.finish(), Err(AsmError::BadJump("back".into())));

        let mut a = Asm::new();
        a.ja("nowhere");
        assert!(matches!(a.finish(), Err(AsmError::UndefinedLabel(_))));
    }
}
