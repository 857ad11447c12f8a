//! Embeddings computed in-process: all-MiniLM-L6-v2 (ONNX) through
//! fastembed, with onnxruntime loaded at run time from the model directory
//! (`scripts/setup-model.sh` puts both in `vendor/model/`). Mean pooling,
//! at most 256 tokens per input, L2-normalised vectors, onnxruntime
//! threads that do not spin.
//!
//! A document longer than the window ([`Embedder::embed_documents`]) is
//! cut into windows of at most 240 tokens (at line ends where it can),
//! each window is embedded, and the document's vector is the token-weighted
//! mean of its windows' vectors, normalised: every token counts, none is
//! cut off. The model id carries the recipe (`-w256`), so vectors made
//! before (heads only) are never mixed with these.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};

/// Vector dimensions of the model.
pub const DIM: usize = 384;
/// Tokens per input; longer chunks are truncated by the tokenizer.
pub const MAX_TOKENS: usize = 256;
/// Larger batches grow memory without helping on two cores.
pub const BATCH: usize = 8;

const FILES: &[&str] = &[
    "model.onnx",
    "libonnxruntime.so",
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "no embedding model found (looked in {looked}); run scripts/setup-model.sh or set CTXPLANE_MODEL_DIR"
    )]
    NotFound { looked: String },
    #[error("embedding model in {dir}: {message}")]
    Load { dir: PathBuf, message: String },
    #[error("embedding failed: {0}")]
    Run(String),
}

/// The model directory: `explicit` (config or `CTXPLANE_MODEL_DIR`) if
/// given, else `vendor/model` beside the binary's build tree, in the
/// working directory, or in the source tree it was built from. Only a directory holding every model file counts.
pub fn find_model_dir(explicit: Option<&Path>) -> Result<PathBuf, EmbedError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(p.to_path_buf());
    } else {
        if let Ok(exe) = std::env::current_exe() {
            // target/{debug,release}/ctxplane -> <repo>/vendor/model
            for up in exe.ancestors().skip(1).take(4) {
                candidates.push(up.join("vendor/model"));
            }
        }
        candidates.push(PathBuf::from("vendor/model"));
        // The source tree this binary was built from (any target dir).
        candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../vendor/model"));
    }
    for c in &candidates {
        if FILES.iter().all(|f| c.join(f).is_file()) {
            return Ok(c.clone());
        }
    }
    Err(EmbedError::NotFound {
        looked: candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

pub struct Embedder {
    model: Mutex<TextEmbedding>,
    interactive: Mutex<TextEmbedding>,
    /// The model's tokenizer without truncation, to cut windows.
    tokenizer: tokenizers::Tokenizer,
    id: String,
    dir: PathBuf,
}

/// Tokens of text per window: the two special tokens and a margin for a
/// window re-tokenized on its own (a cut inside a word) stay within the model's.
pub const WINDOW_TOKENS: usize = MAX_TOKENS - 16;

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the model in `dir` (see [`find_model_dir`]) with `threads`
    /// onnxruntime threads.
    pub fn load(dir: &Path, threads: usize) -> Result<Embedder, EmbedError> {
        Self::load_with(dir, threads, threads)
    }

    /// Loads with separate thread counts for the bulk (indexing) and the
    /// interactive (query) session; a server gives indexing fewer threads
    /// so queries keep a core while it embeds.
    pub fn load_with(dir: &Path, bulk_threads: usize, query_threads: usize) -> Result<Embedder, EmbedError> {
        let err = |message: String| EmbedError::Load {
            dir: dir.to_path_buf(),
            message,
        };
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| err(format!("{name}: {e}")));
        let onnx = read("model.onnx")?;
        // The id names the exact weights: vectors from other weights never mix.
        let id = format!(
            "all-MiniLM-L6-v2-int8-{}-w{MAX_TOKENS}",
            &blake3::hash(&onnx).to_hex()[..12]
        );
        let environment = ort::init_from(dir.join("libonnxruntime.so"))
            .map_err(|e| err(format!("loading onnxruntime: {e}")))?
            .with_name("ctxplane")
            .build()
            .map_err(|e| err(format!("starting onnxruntime: {e}")))?;
        let files = TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        // Two sessions on one environment: bulk embedding for the indexer,
        // and one for queries, so a query never waits behind a batch.
        let session = |threads: usize| {
            let model =
                UserDefinedEmbeddingModel::new(onnx.clone(), files.clone()).with_pooling(Pooling::Mean);
            let options = InitOptionsUserDefined::new()
                .with_environment(environment.clone())
                .with_max_length(MAX_TOKENS)
                .with_intra_threads(threads.max(1))
                // No CPU memory arena: onnxruntime's arena grows to each new
                // high-water mark (a batch of long texts needs tens of MB of
                // attention scratch) and never gives it back; heaptrack on a
                // serve soak found ~740 MB held there while RSS crept up
                // ~3 MB/min. Without it each run's scratch is allocated and
                // freed (and returned to the OS: see `bound_native_heap` in
                // the binary's main.rs).
                .with_execution_providers(vec![ort::ep::CPU::default().with_arena_allocator(false).build()])
                .with_session_config("session.intra_op.allow_spinning", "0")
                .with_session_config("session.inter_op.allow_spinning", "0");
            TextEmbedding::try_new_from_user_defined(model, options).map_err(|e| err(e.to_string()))
        };
        let model = session(bulk_threads)?;
        let interactive = session(query_threads)?;
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(&files.tokenizer_file)
            .map_err(|e| err(format!("tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(None)
            .map_err(|e| err(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        Ok(Embedder {
            model: Mutex::new(model),
            interactive: Mutex::new(interactive),
            tokenizer,
            id,
            dir: dir.to_path_buf(),
        })
    }

    /// Identifies the model and its weights, e.g. `all-MiniLM-L6-v2-int8-8199be6f699a`.
    pub fn model_id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unit-length vectors for `texts`, in order (the bulk session, for
    /// indexing). Each text is cut at the window: see
    /// [`Embedder::embed_documents`] for texts that may be longer.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Self::run(&self.model, texts)
    }

    /// The byte ranges of `text`'s windows and their token counts: one
    /// window when it fits, else windows of at most [`WINDOW_TOKENS`]
    /// tokens, each ending at the last line end in its second half when
    /// there is one.
    pub fn windows(&self, text: &str) -> Result<Vec<(std::ops::Range<usize>, usize)>, EmbedError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| EmbedError::Run(format!("tokenizing: {e}")))?;
        let offsets = enc.get_offsets();
        if offsets.len() <= WINDOW_TOKENS {
            return Ok(vec![(0..text.len(), offsets.len().max(1))]);
        }
        let mut out = Vec::new();
        let (mut first, mut start) = (0usize, 0usize);
        while first < offsets.len() {
            let last = (first + WINDOW_TOKENS).min(offsets.len()) - 1;
            let mut end = if last + 1 == offsets.len() {
                text.len()
            } else {
                offsets[last + 1].0
            };
            let mut next = last + 1;
            if last + 1 < offsets.len() {
                // Prefer a line end in the window's second half.
                let half = offsets[first + WINDOW_TOKENS / 2].0;
                if let Some(nl) = text.get(half..end).and_then(|s| s.rfind('\n')) {
                    let cut = half + nl + 1;
                    if let Some(k) = (first..=last).find(|&k| offsets[k].0 >= cut)
                        && k > first
                    {
                        end = cut;
                        next = k;
                    }
                }
            }
            let end = end.max(start).min(text.len());
            let end = (end..=text.len())
                .find(|&e| text.is_char_boundary(e))
                .unwrap_or(text.len());
            out.push((start..end, next - first));
            start = end;
            first = next;
        }
        Ok(out)
    }

    /// Unit-length vectors for documents of any length, in order: each is
    /// the token-weighted mean of its windows' vectors (bulk session).
    pub fn embed_documents(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut pieces: Vec<&str> = Vec::new();
        let mut owner: Vec<(usize, f32)> = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            for (range, tokens) in self.windows(t)? {
                pieces.push(&t[range]);
                owner.push((i, tokens as f32));
            }
        }
        let vectors = Self::run(&self.model, &pieces)?;
        let mut out = vec![vec![0.0f32; DIM]; texts.len()];
        for (v, (i, w)) in vectors.iter().zip(&owner) {
            for (o, x) in out[*i].iter_mut().zip(v) {
                *o += w * x;
            }
        }
        for v in &mut out {
            normalize(v);
        }
        Ok(out)
    }

    /// The same, on the session kept for queries and other short,
    /// latency-bound texts, which indexing never holds.
    pub fn embed_interactive(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Self::run(&self.interactive, texts)
    }

    fn run(session: &Mutex<TextEmbedding>, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Self::run_ordered(session, texts, true)
    }

    /// [`Embedder::embed`] without sorting by length: the baseline the
    /// embedding benchmark compares against.
    pub fn embed_unsorted(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Self::run_ordered(&self.model, texts, false)
    }

    /// Each batch is padded to its longest text, so texts go to the model
    /// shortest first (batches of similar lengths compute little padding);
    /// the vectors come back in the input order.
    fn run_ordered(
        session: &Mutex<TextEmbedding>,
        texts: &[&str],
        sort: bool,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        if sort {
            order.sort_by_key(|&i| texts[i].len());
        }
        let sorted: Vec<&str> = order.iter().map(|&i| texts[i]).collect();
        let mut model = session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let vectors = model
            .embed(sorted, Some(BATCH))
            .map_err(|e| EmbedError::Run(e.to_string()))?;
        drop(model);
        if vectors.len() != texts.len() {
            return Err(EmbedError::Run(format!(
                "model returned {} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        let mut out = vec![Vec::new(); texts.len()];
        for (v, &i) in vectors.into_iter().zip(&order) {
            out[i] = v;
        }
        for v in &mut out {
            if v.len() != DIM {
                return Err(EmbedError::Run(format!(
                    "model returned {} dimensions, not {DIM}",
                    v.len()
                )));
            }
            normalize(v);
        }
        Ok(out)
    }
}

/// A model id as part of a file name: letters, digits and `-`, anything
/// else `_` (the embedding cache and the topic vectors name their files so).
pub fn file_stem(model_id: &str) -> String {
    model_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v {
            *x /= norm;
        }
    }
}
