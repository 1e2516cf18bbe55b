//! A small pickle virtual machine for PyTorch checkpoints: exactly the opcodes that
//! `torch.save` emits for a `state_dict` (protocol 2, and the few protocol-4 framing opcodes
//! newer files use), and exactly the globals a tensor state dict needs.
//!
//! It executes no code: a global outside [`Global`] is refused with an error naming it. Every
//! length field is checked against the bytes that remain before anything is allocated, and the
//! number of values a stream can build (memo copies included) is capped, so a hostile file gets
//! an error, never a panic or a huge allocation.

use std::collections::HashMap;

use candle::DType;

use crate::{Error, Result};

/// The most values (counted recursively) one pickle may build; a real VGG state dict builds
/// ~1 000. Guards against "billion laughs" streams that copy memo entries into each other.
const MAX_VALUES: usize = 1 << 22;
/// The deepest stack a pickle may build.
const MAX_STACK: usize = 1 << 16;
/// The deepest nesting of containers (a state dict needs 4): deeper values would make the
/// recursive clone, size and drop of a value overflow the thread's stack.
const MAX_DEPTH: usize = 32;

/// The globals a tensor state dict refers to; nothing else is accepted.
#[derive(Clone, Debug, PartialEq)]
pub enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter`.
    RebuildParameter,
    /// `torch.FloatStorage` and friends, with the element type.
    StorageType(DType),
}

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch", "FloatStorage") => Global::StorageType(DType::F32),
            ("torch", "HalfStorage") => Global::StorageType(DType::F16),
            ("torch", "BFloat16Storage") => Global::StorageType(DType::BF16),
            ("torch", "DoubleStorage") => Global::StorageType(DType::F64),
            ("torch", "LongStorage") => Global::StorageType(DType::I64),
            ("torch", "ByteStorage") => Global::StorageType(DType::U8),
            _ => return None,
        })
    }
}

/// A storage referenced by a persistent id: `('storage', StorageType, key, location, numel)`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    /// The storage's key: where its bytes are (a zip entry name, or the legacy key list).
    pub key: String,
    /// Element type.
    pub dtype: DType,
    /// Number of elements.
    pub numel: usize,
}

/// A tensor view of a storage, as `_rebuild_tensor_v2` describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// The storage.
    pub storage: StorageRef,
    /// First element, in elements.
    pub offset: usize,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides, in elements.
    pub stride: Vec<usize>,
}

/// A value on the pickle stack.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer (LONG1 values up to 16 bytes; the legacy magic number needs 10).
    Int(i128),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict (also an `OrderedDict`), in insertion order.
    Dict(Vec<(Value, Value)>),
    /// An accepted global.
    Global(Global),
    /// A storage from a persistent id.
    Storage(StorageRef),
    /// A tensor.
    Tensor(TensorRef),
}

impl Value {
    /// Nesting depth (1 for a scalar); bounded by [`MAX_DEPTH`] for every value the VM builds.
    fn depth(&self) -> usize {
        1 + match self {
            Value::Tuple(v) | Value::List(v) => v.iter().map(Value::depth).max().unwrap_or(0),
            Value::Dict(v) => v
                .iter()
                .map(|(k, x)| k.depth().max(x.depth()))
                .max()
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// Number of values in this one, itself included.
    fn size(&self) -> usize {
        1 + match self {
            Value::Tuple(v) | Value::List(v) => v.iter().map(Value::size).sum(),
            Value::Dict(v) => v.iter().map(|(k, x)| k.size() + x.size()).sum(),
            _ => 0,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    /// The value as a non-negative integer that fits in `usize`.
    pub fn as_usize(&self) -> Option<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        }
    }
}

/// Runs one pickle starting at `data[pos]`; returns the value STOP left and the position after
/// it. `what` names the stream in errors (e.g. the file name).
pub fn load(data: &[u8], pos: usize, what: &str) -> Result<(Value, usize)> {
    Vm {
        data,
        pos,
        what,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        built: 0,
    }
    .run()
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'a str,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    built: usize,
}

impl<'a> Vm<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::Parse {
            what: self.what.to_string(),
            msg: format!("pickle at byte {}: {msg}", self.pos),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                self.err(format!(
                    "truncated: needs {n} more bytes, {} remain",
                    self.data.len().saturating_sub(self.pos)
                ))
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N)?);
        Ok(b)
    }

    /// A length field, checked against the remaining bytes before use.
    fn len_field(&mut self, len: u64) -> Result<usize> {
        let remain = self.data.len().saturating_sub(self.pos);
        usize::try_from(len)
            .ok()
            .filter(|&n| n <= remain)
            .ok_or_else(|| self.err(format!("length {len} exceeds the {remain} remaining bytes")))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("unterminated text line"))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| self.err("text line is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.err("stack too deep"));
        }
        if matches!(v, Value::Tuple(_) | Value::List(_) | Value::Dict(_)) && v.depth() > MAX_DEPTH {
            return Err(self.err(format!("values nested deeper than {MAX_DEPTH}")));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err("pop across a MARK"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&mut self) -> Result<&mut Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err("empty stack after MARK"));
        }
        let e = self.err("stack underflow");
        self.stack.last_mut().ok_or(e)
    }

    /// The values pushed since the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| self.err("no MARK"))?;
        Ok(self.stack.split_off(m))
    }

    fn count(&mut self, n: usize) -> Result<()> {
        self.built = self.built.saturating_add(n);
        if self.built > MAX_VALUES {
            return Err(self.err(format!("builds more than {MAX_VALUES} values")));
        }
        Ok(())
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let n = self.top()?.size();
        self.count(n)?; // the copy costs what it holds
        let v = self.top()?.clone();
        if self.memo.len() >= MAX_STACK && !self.memo.contains_key(&key) {
            return Err(self.err("too many memo entries"));
        }
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<()> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
        self.count(v.size())?;
        self.push(v)
    }

    fn run(mut self) -> Result<(Value, usize)> {
        loop {
            let op = self.u8()?;
            self.count(1)?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {p}")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only.
                    self.take(8)?;
                }
                b'.' => {
                    // STOP
                    let v = self.pop()?;
                    return Ok((v, self.pos));
                }
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?;
                }
                0x85..=0x87 => {
                    // TUPLE1..3
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items))?;
                }
                b'l' => {
                    // LIST
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?;
                }
                b'd' => {
                    // DICT
                    let items = self.pop_mark()?;
                    let d = self.pairs(items)?;
                    self.push(Value::Dict(d))?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(v.into()))?;
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement of n bytes.
                    let n = if op == 0x8a {
                        self.u8()? as u64
                    } else {
                        u32::from_le_bytes(self.le()?) as u64
                    };
                    let n = self.len_field(n)?;
                    if n > 16 {
                        return Err(self.err(format!("integer of {n} bytes is too large")));
                    }
                    let b = self.take(n)?;
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                        [0xffu8; 16]
                    } else {
                        [0u8; 16]
                    };
                    buf[..n].copy_from_slice(b);
                    self.push(Value::Int(i128::from_le_bytes(buf)))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v))?;
                }
                b'X' | 0x8c | 0x8d => {
                    // BINUNICODE / SHORT_BINUNICODE / BINUNICODE8
                    let n = match op {
                        b'X' => u32::from_le_bytes(self.le()?) as u64,
                        0x8c => self.u8()? as u64,
                        _ => u64::from_le_bytes(self.le()?),
                    };
                    let n = self.len_field(n)?;
                    let b = self.take(n)?;
                    let s = std::str::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))?;
                    self.push(Value::Str(s.to_string()))?;
                }
                b'T' | b'U' | b'B' | b'C' => {
                    // BINSTRING / SHORT_BINSTRING / BINBYTES / SHORT_BINBYTES
                    let n = match op {
                        b'U' | b'C' => self.u8()? as u64,
                        _ => u32::from_le_bytes(self.le()?) as u64,
                    };
                    let n = self.len_field(n)?;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?;
                }
                b'c' => {
                    // GLOBAL "module\nname\n"
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = Global::resolve(module, name).ok_or_else(|| {
                        self.err(format!(
                            "refusing global `{module}.{name}` (not part of a tensor state dict)"
                        ))
                    })?;
                    self.push(Value::Global(g))?;
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.err("STACK_GLOBAL needs two strings"));
                    };
                    let g = Global::resolve(&module, &name).ok_or_else(|| {
                        self.err(format!(
                            "refusing global `{module}.{name}` (not part of a tensor state dict)"
                        ))
                    })?;
                    self.push(Value::Global(g))?;
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.le()?);
                    self.memo_put(k)?;
                }
                0x94 => {
                    // MEMOIZE
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.le()?);
                    self.memo_get(k)?;
                }
                b'Q' => {
                    // BINPERSID
                    let pid = self.pop()?;
                    let s = self.storage(pid)?;
                    self.push(Value::Storage(s))?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.reduce(f, args)?;
                    self.push(v)?;
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args); only OrderedDict() is accepted.
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.reduce(cls, args)?;
                    self.push(v)?;
                }
                b'b' => {
                    // BUILD: state of an OrderedDict (its `_metadata`) carries no tensors.
                    let _state = self.pop()?;
                    if !matches!(self.top()?, Value::Dict(_)) {
                        return Err(self.err("BUILD on something other than a dict"));
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.check_child(&[&k, &v])?;
                    self.dict_top()?.push((k, v));
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.check_child(&items.iter().collect::<Vec<_>>())?;
                    let pairs = self.pairs(items)?;
                    self.dict_top()?.extend(pairs);
                }
                b'a' => {
                    let v = self.pop()?;
                    self.check_child(&[&v])?;
                    self.list_top()?.push(v);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.check_child(&items.iter().collect::<Vec<_>>())?;
                    self.list_top()?.extend(items);
                }
                b'0' => {
                    self.pop()?;
                }
                other => {
                    self.pos -= 1;
                    return Err(self.err(format!("unsupported opcode 0x{other:02x}")));
                }
            }
        }
    }

    /// Values about to go into the container on top of the stack must leave it within
    /// [`MAX_DEPTH`].
    fn check_child(&self, children: &[&Value]) -> Result<()> {
        if children.iter().any(|c| c.depth() >= MAX_DEPTH) {
            return Err(self.err(format!("values nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for a dict"));
        }
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn dict_top(&mut self) -> Result<&mut Vec<(Value, Value)>> {
        let e = self.err("SETITEM(S) on something other than a dict");
        match self.top()? {
            Value::Dict(d) => Ok(d),
            _ => Err(e),
        }
    }

    fn list_top(&mut self) -> Result<&mut Vec<Value>> {
        let e = self.err("APPEND(S) on something other than a list");
        match self.top()? {
            Value::List(l) => Ok(l),
            _ => Err(e),
        }
    }

    /// `('storage', StorageType, key, location, numel)` → a storage reference.
    fn storage(&self, pid: Value) -> Result<StorageRef> {
        let bad = || self.err("persistent id is not ('storage', type, key, location, numel)");
        let Value::Tuple(t) = pid else {
            return Err(bad());
        };
        match t.as_slice() {
            [Value::Str(tag), Value::Global(Global::StorageType(dtype)), Value::Str(key), Value::Str(_), numel, ..]
                if tag == "storage" =>
            {
                Ok(StorageRef {
                    key: key.clone(),
                    dtype: *dtype,
                    numel: numel.as_usize().ok_or_else(bad)?,
                })
            }
            _ => Err(bad()),
        }
    }

    fn reduce(&self, f: Value, args: Value) -> Result<Value> {
        let Value::Tuple(args) = args else {
            return Err(self.err(format!("call arguments are a {}, not a tuple", args.kind())));
        };
        match f {
            Value::Global(Global::OrderedDict) => Ok(Value::Dict(Vec::new())),
            Value::Global(Global::RebuildParameter) => match args.into_iter().next() {
                Some(t @ Value::Tensor(_)) => Ok(t),
                _ => Err(self.err("_rebuild_parameter without a tensor")),
            },
            Value::Global(Global::RebuildTensorV2) => {
                // (storage, offset, size, stride, requires_grad, hooks[, metadata])
                let bad = |what: &str| self.err(format!("_rebuild_tensor_v2: bad {what}"));
                let mut it = args.into_iter();
                let Some(Value::Storage(storage)) = it.next() else {
                    return Err(bad("storage"));
                };
                let offset = it
                    .next()
                    .and_then(|v| v.as_usize())
                    .ok_or_else(|| bad("offset"))?;
                let dims = |v: Option<Value>| -> Option<Vec<usize>> {
                    match v? {
                        Value::Tuple(d) => d.iter().map(Value::as_usize).collect(),
                        _ => None,
                    }
                };
                let shape = dims(it.next()).ok_or_else(|| bad("size"))?;
                let stride = dims(it.next()).ok_or_else(|| bad("stride"))?;
                if shape.len() != stride.len() {
                    return Err(bad("stride (rank differs from size)"));
                }
                Ok(Value::Tensor(TensorRef {
                    storage,
                    offset,
                    shape,
                    stride,
                }))
            }
            other => Err(self.err(format!("cannot call a {}", other.kind()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_small_dict() {
        // {'a': 1, 'b': (2, None)} at protocol 2, as Python writes it.
        let p =
            b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02K\x02N\x86q\x03u.";
        let (v, end) = load(p, 0, "t").unwrap();
        assert_eq!(end, p.len());
        assert_eq!(
            v,
            Value::Dict(vec![
                (Value::Str("a".into()), Value::Int(1)),
                (
                    Value::Str("b".into()),
                    Value::Tuple(vec![Value::Int(2), Value::None])
                ),
            ])
        );
    }

    #[test]
    fn refuses_code_execution() {
        let p = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.";
        let e = load(p, 0, "evil.pth").unwrap_err().to_string();
        assert!(e.contains("refusing global `os.system`"), "{e}");
        assert!(e.starts_with("evil.pth: "), "{e}");
    }

    #[test]
    fn hostile_lengths_and_copies_are_errors() {
        // A 4 GiB string length in a 12-byte stream.
        let e = load(b"\x80\x02X\xff\xff\xff\xffab.", 0, "t").unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        // Doubling a memoized tuple 40 times.
        let mut p = b"\x80\x02K\x01q\x00".to_vec();
        for i in 0..40u8 {
            p.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]);
        }
        p.push(b'.');
        let e = load(&p, 0, "t").unwrap_err();
        assert!(e.to_string().contains("builds more than"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // (((…(1,),)…),) 100 000 levels deep, memoized at every level (found by fuzzing).
        let mut p = b"\x80\x02K\x01".to_vec();
        for _ in 0..100_000 {
            p.extend_from_slice(b"\x85q\x00");
        }
        p.push(b'.');
        let e = load(&p, 0, "t").unwrap_err().to_string();
        assert!(e.contains("nested deeper than 32"), "{e}");
    }

    #[test]
    fn the_legacy_magic_number_fits() {
        let p = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.";
        let (v, _) = load(p, 0, "t").unwrap();
        assert_eq!(v, Value::Int(0x1950a86a20f9469cfc6c));
    }
}
