//! Opening a model file: memory-mapped, so the weights are used in place.

use anyhow::{anyhow, bail, Context, Result};
use tinygpt::prelude::*;
use tinygpt_runtime::{Error, KvDType, Model, Session};

use crate::sys::{File, Mmap};

/// A `.tgpt` file mapped into memory.
pub struct ModelFile {
    path: String,
    map: Mmap,
}

impl ModelFile {
    /// Maps `path` read-only.
    pub fn open(path: &str) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open model file '{path}'"))?;
        let meta = file.metadata().with_context(|| format!("cannot read '{path}'"))?;
        if meta.is_dir() {
            bail!("'{path}' is a directory, not a model file");
        }
        if !meta.is_file() {
            bail!("'{path}' is not a regular file (a device, pipe or socket), not a model file");
        }
        if meta.len() == 0 {
            bail!("'{path}' is empty, not a .tgpt model");
        }
        // SAFETY: the map is only read. The runtime validates every byte it uses (sizes, offsets,
        // checksum) and never trusts the contents; the remaining hazard is another process
        // truncating the file while it is mapped, which the OS reports as SIGBUS, as for any
        // memory-mapped reader.
        let map = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map '{path}'"))?;
        Ok(ModelFile { path: path.to_owned(), map })
    }

    /// The file's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file's size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Parses and validates the model (the map is page-aligned, as the runtime requires).
    pub fn model(&self) -> Result<Model<'_>> {
        Model::from_bytes(&self.map).map_err(|e| anyhow!("'{}' is not a usable model: {e}", self.path))
    }
}

/// The context length to use: the requested one, or the model's `block_size`.
pub fn context_len(model: &Model<'_>, requested: Option<usize>) -> Result<usize> {
    let max = model.config().block_size as usize;
    match requested {
        None => Ok(max),
        Some(c) if c <= max => Ok(c),
        Some(c) => bail!("context length {c} is larger than the model's block_size {max}"),
    }
}

/// A zeroed buffer big enough for a session of `ctx` tokens with KV type `kv`.
pub fn session_buffer(model: &Model<'_>, ctx: usize, kv: KvDType) -> Result<Vec<u8>> {
    let n = model.session_bytes(ctx, kv);
    if n == usize::MAX {
        bail!("a context of {ctx} tokens does not fit in memory");
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(n).map_err(|_| anyhow!("cannot allocate {n} bytes for a context of {ctx} tokens"))?;
    buf.resize(n, 0);
    Ok(buf)
}

/// Builds a session, with the runtime's error in words.
pub fn session<'s, 'a>(model: &'s Model<'a>, buf: &'s mut [u8], ctx: usize, kv: KvDType) -> Result<Session<'s, 'a>> {
    Session::new(model, buf, ctx, kv).map_err(|e: Error| anyhow!("cannot start a session: {e}"))
}
