//! `tinygpt convert`: a llama2.c checkpoint or a llama GGUF file into a `.tgpt` model.

use anyhow::{anyhow, bail, Context, Result};
use tinygpt::convert;
use tinygpt::prelude::*;
use tinygpt_runtime::{DType, Model};

use crate::cli::{ConvertArgs, ConvertDType};
use crate::sys::{self, check_writable, write_atomic, File, Mmap, Write as _};

/// Maps a whole input file read-only.
fn map(path: &str, what: &str) -> Result<Mmap> {
    let file = File::open(path).with_context(|| format!("cannot open {what} '{path}'"))?;
    let meta = file.metadata().with_context(|| format!("cannot read '{path}'"))?;
    if !meta.is_file() {
        bail!("'{path}' is not a regular file");
    }
    if meta.len() == 0 {
        bail!("'{path}' is empty");
    }
    // SAFETY: the map is only read, and the readers check every length and offset they use; the
    // remaining hazard is another process truncating the file while it is mapped (SIGBUS).
    unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map '{path}'"))
}

pub fn run(a: &ConvertArgs) -> Result<()> {
    // Where the output goes is checked before the work is done.
    check_writable(&a.out).with_context(|| format!("cannot write '{}'", a.out))?;
    let input = map(&a.input, "the input")?;
    let tok = a.tokenizer.as_deref().map(|p| map(p, "the tokenizer")).transpose()?;
    let m = convert::read(&input, tok.as_deref()).with_context(|| format!("'{}'", a.input))?;
    let dtype = match a.dtype {
        None => convert::default_dtype(&m),
        Some(ConvertDType::F32) => DType::F32,
        Some(ConvertDType::F16) => DType::F16,
        Some(ConvertDType::Int8) => DType::I8,
        Some(ConvertDType::Int4) => DType::I4,
    };
    let group = match a.group_size {
        Some(g) => u32::try_from(g).map_err(|_| anyhow!("--group-size {g} is too large"))?,
        None if convert::default_dtype(&m) == DType::I8 => m.config.group_size,
        None => 64,
    };
    let bytes = convert::encode(&m, dtype, group).context("cannot build the model")?;
    // Check the result with the runtime's own reader before it replaces anything.
    let aligned = tinygpt_runtime::writer::AlignedBytes::new(&bytes);
    let model = Model::from_bytes(&aligned).map_err(|e| anyhow!("the converted model does not load: {e}"))?;
    write_atomic(&a.out, &bytes).with_context(|| format!("cannot write '{}'", a.out))?;
    let c = model.config();
    let _ = writeln!(
        sys::stderr(),
        "tinygpt: wrote {} ({} bytes) from {}: llama, {} layers, {} heads ({} kv), width {}, hidden {}, context {}, \
         {} tokens (sentencepiece), {}{}",
        a.out,
        bytes.len(),
        m.source,
        c.n_layer,
        c.n_head,
        c.n_kv_head,
        c.n_embd,
        c.n_hidden,
        c.block_size,
        c.vocab_size,
        dtype.name(),
        if dtype == DType::I8 { format!(" (group {group})") } else { String::new() }
    );
    Ok(())
}
