//! The lexical index (tantivy): one document per chunk, searchable with
//! BM25 through the code-aware tokenizer, filterable by source and tier.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, PhraseQuery, Query, QueryClone, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::{IndexError, Result};
use crate::tokenizer::{CODE_TOKENIZER, CodeTokenizer};

#[derive(Clone, Copy, Debug)]
struct Fields {
    chunk_id: Field,
    source: Field,
    /// `source \x1f path`, for deleting a file's chunks.
    file_key: Field,
    tier: Field,
    path: Field,
    /// The file's name alone (`reconcile.py`): a query naming a file
    /// matches it here more strongly than anywhere in a path.
    file_name: Field,
    language: Field,
    symbol: Field,
    kind: Field,
    start_line: Field,
    end_line: Field,
    content: Field,
    /// The content again, analysed as English prose (stemmed, no stop words).
    prose: Field,
    /// Definition headers (`Chunk::signature`), code tokens; not stored
    /// (a shared index gets them by chunking the file again:
    /// [`Lexical::docs_for_file_with_evidence`]).
    signature: Field,
    /// Doc comments and docstrings (`Chunk::doc`), as prose; not stored.
    doc: Field,
    file_hash: Field,
    chunk_hash: Field,
    commit: Field,
    ingested_at: Field,
    tiebreak: Field,
}

/// A chunk as stored and returned.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ChunkDoc {
    pub chunk_id: String,
    pub source: String,
    pub tier: u8,
    pub path: String,
    pub language: String,
    pub symbol: Option<String>,
    pub kind: String,
    pub start_line: u32,
    pub end_line: u32,
    pub content: String,
    /// blake3 of the whole (unredacted) file the chunk came from.
    pub file_hash: String,
    /// blake3 of the chunk's (redacted) text.
    pub chunk_hash: String,
    pub commit: Option<String>,
    /// Unix seconds.
    pub ingested_at: i64,
}

impl ChunkDoc {
    /// Whether any stored text field holds `needle` (leak checks).
    pub fn contains(&self, needle: &str) -> bool {
        [
            self.chunk_id.as_str(),
            &self.source,
            &self.path,
            &self.language,
            self.symbol.as_deref().unwrap_or(""),
            &self.kind,
            &self.content,
            &self.file_hash,
            &self.chunk_hash,
            self.commit.as_deref().unwrap_or(""),
        ]
        .iter()
        .any(|f| f.contains(needle))
    }
}

/// What a chunk's definitions say about it beyond its text.
#[derive(Clone, Copy, Debug, Default)]
pub struct Evidence<'a> {
    pub signature: Option<&'a str>,
    pub doc: Option<&'a str>,
}

/// [`Evidence`] as read back from the index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnedEvidence {
    pub signature: Option<String>,
    pub doc: Option<String>,
}

impl OwnedEvidence {
    pub fn as_evidence(&self) -> Evidence<'_> {
        Evidence {
            signature: self.signature.as_deref(),
            doc: self.doc.as_deref(),
        }
    }
}

/// Which chunks a reader may see. An empty source list sees nothing.
#[derive(Clone, Debug)]
pub struct Filter {
    pub sources: Vec<String>,
    pub max_tier: u8,
}

/// Weight of the file-name field (the path's last component): tuned on
/// the dev split of `file_localisation` (benches/).
const FILE_NAME_BOOST: f32 = 1.0;

/// Weights of the signature and doc fields, tuned the same way.
const SIGNATURE_BOOST: f32 = 2.0;
const DOC_BOOST: f32 = 1.0;

/// A field a query's words are looked for in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueryField {
    pub name: &'static str,
    pub boost: f32,
    /// Analysed with the code tokenizer (positions kept, so words that
    /// split into several tokens are also matched as phrases); otherwise
    /// as stemmed prose.
    pub code: bool,
    /// A definition's header or docs (skipped by parts that say so).
    pub definition: bool,
}

/// Every field a query searches, with its weight. Stemmed prose carries
/// most of the weight; exact code tokens, symbols and paths add to it
/// (weights measured on SciFact and CoSQA, see
/// benches/src/bin/retrieval_eval.rs; the file-name, signature and doc
/// boosts on the dev split of `file_localisation`). The one table both
/// the tantivy query and Qdrant's term vectors ([`crate::terms`]) are
/// built from.
pub const QUERY_FIELDS: [QueryField; 7] = [
    QueryField {
        name: "content",
        boost: 0.5,
        code: true,
        definition: false,
    },
    QueryField {
        name: "prose",
        boost: 1.0,
        code: false,
        definition: false,
    },
    QueryField {
        name: "symbol",
        boost: 0.5,
        code: true,
        definition: false,
    },
    QueryField {
        name: "path",
        boost: 0.5,
        code: true,
        definition: false,
    },
    QueryField {
        name: "file_name",
        boost: FILE_NAME_BOOST,
        code: true,
        definition: false,
    },
    QueryField {
        name: "signature",
        boost: SIGNATURE_BOOST,
        code: true,
        definition: true,
    },
    QueryField {
        name: "doc",
        boost: DOC_BOOST,
        code: false,
        definition: true,
    },
];

/// The analyser of a query field.
pub fn analyzer(code: bool) -> TextAnalyzer {
    if code {
        TextAnalyzer::builder(CodeTokenizer).build()
    } else {
        prose_analyzer()
    }
}

/// A query's terms per field and their weights (a token repeated counts
/// again), and the phrases of words that split into several positions
/// (`a/b.py`, `pkg.module`), each as the field's index in
/// [`QUERY_FIELDS`], its terms and weight.
#[derive(Debug, Default)]
pub struct QueryTerms {
    pub weights: std::collections::BTreeMap<(usize, String), f32>,
    pub phrases: Vec<(usize, Vec<String>, f32)>,
}

/// [`QueryTerms`] of `parts`, made by the fields' own analysers: whole
/// words and identifiers, never query syntax.
pub fn query_terms(parts: &[QueryPart]) -> QueryTerms {
    let mut analyzers = [analyzer(true), analyzer(false)];
    let mut out = QueryTerms::default();
    for part in parts.iter().filter(|p| p.weight > 0.0) {
        for (i, field) in QUERY_FIELDS.iter().enumerate() {
            if !part.definitions && field.definition {
                continue;
            }
            let analyzer = &mut analyzers[usize::from(!field.code)];
            // Words: runs of letters, digits and `_` `.` `/` (so that
            // identifiers, dotted names and paths stay whole).
            let words = part
                .text
                .split(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '/')))
                .filter(|w| !w.is_empty());
            for word in words {
                let mut stream = analyzer.token_stream(word);
                let mut tokens: Vec<(usize, String)> = Vec::new();
                stream.process(&mut |t| tokens.push((t.position, t.text.clone())));
                let several = tokens.windows(2).any(|w| w[0].0 != w[1].0);
                if several && !field.code {
                    // `pkg.module` or `a_b` in stemmed prose is several
                    // words: without positions their order is lost, and
                    // the code fields match the whole.
                    continue;
                }
                // The first token at each position: an identifier whole
                // (`validate_refund`), not its parts, which the index also
                // holds at that position; a query for the parts
                // (`validate refund`) names them itself.
                let mut firsts = Vec::new();
                let mut last = None;
                for (p, text) in &tokens {
                    if last != Some(*p) {
                        *out.weights.entry((i, text.clone())).or_default() += field.boost * part.weight;
                        firsts.push(text.clone());
                        last = Some(*p);
                    }
                }
                if several {
                    out.phrases.push((i, firsts, field.boost * part.weight));
                }
            }
        }
    }
    out
}

/// Part of a query: plain text and how much its words count.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryPart {
    pub text: String,
    pub weight: f32,
    /// Whether its words are also looked for in definitions' headers and
    /// docs (the `signature` and `doc` fields).
    pub definitions: bool,
}

impl QueryPart {
    pub fn new(text: impl Into<String>, weight: f32) -> QueryPart {
        QueryPart {
            text: text.into(),
            weight,
            definitions: true,
        }
    }

    /// The same, not looked for in definitions' headers and docs.
    pub fn without_definitions(self) -> QueryPart {
        QueryPart {
            definitions: false,
            ..self
        }
    }
}

pub struct Lexical {
    index: Index,
    reader: IndexReader,
    f: Fields,
    stats: std::sync::Mutex<StatsCache>,
}

impl std::fmt::Debug for Lexical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lexical")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Words for prose: lower-cased, English stop words dropped, stemmed.
/// Code identifiers are matched by the code tokenizer on `content`.
const PROSE_TOKENIZER: &str = "ctxplane_prose";

fn prose_analyzer() -> TextAnalyzer {
    use tantivy::tokenizer::{
        Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter,
    };
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser);
    match StopWordFilter::new(Language::English) {
        Some(stop) => builder
            .filter(stop)
            .filter(Stemmer::new(Language::English))
            .build(),
        None => builder.filter(Stemmer::new(Language::English)).build(),
    }
}

fn file_key(source: &str, path: &str) -> String {
    format!("{source}\u{1f}{path}")
}

/// A fast field derived from the chunk id: equal scores rank by it, so an
/// answer does not depend on how the index happens to be segmented.
const TIEBREAK: &str = "tiebreak";

/// (Also how a shared index orders equal scores, so both rank alike.)
pub fn tiebreak_of(chunk_id: &str) -> u64 {
    let h = blake3::hash(chunk_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let code = |stored: bool| {
        let o = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(CODE_TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        if stored { o.set_stored() } else { o }
    };
    // Stemmed English, frequencies only (never stored: the text is the
    // content's, or part of it).
    let prose = || {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(PROSE_TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        )
    };
    let f = Fields {
        chunk_id: b.add_text_field("chunk_id", STRING | STORED),
        source: b.add_text_field("source", STRING | STORED),
        file_key: b.add_text_field("file_key", STRING),
        tier: b.add_u64_field("tier", INDEXED | STORED),
        path: b.add_text_field("path", code(true)),
        file_name: b.add_text_field("file_name", code(false)),
        language: b.add_text_field("language", STRING | STORED),
        symbol: b.add_text_field("symbol", code(true)),
        kind: b.add_text_field("kind", STRING | STORED),
        start_line: b.add_u64_field("start_line", STORED),
        end_line: b.add_u64_field("end_line", STORED),
        content: b.add_text_field("content", code(true)),
        prose: b.add_text_field("prose", prose()),
        signature: b.add_text_field("signature", code(false)),
        doc: b.add_text_field("doc", prose()),
        file_hash: b.add_text_field("file_hash", STRING | STORED),
        chunk_hash: b.add_text_field("chunk_hash", STRING | STORED),
        commit: b.add_text_field("commit", STRING | STORED),
        ingested_at: b.add_i64_field("ingested_at", STORED),
        tiebreak: b.add_u64_field(TIEBREAK, FAST),
    };
    (b.build(), f)
}

/// BM25 statistics (document count, document frequencies, field lengths)
/// over the live documents a scope admits, instead of the whole index.
/// Per-field token totals and the document count are kept per searcher
/// generation and scope (they only change when the index does); document
/// frequencies are memoised for one query (tantivy asks once per term and
/// field weight).
struct ScopedStats<'a> {
    searcher: &'a tantivy::Searcher,
    scope: &'a BooleanQuery,
    /// Identifies the scope within one searcher generation.
    key: (u64, String),
    cache: &'a std::sync::Mutex<StatsCache>,
    doc_freqs: std::sync::Mutex<std::collections::HashMap<Term, u64>>,
}

/// Scope statistics of the latest searcher generation, per scope.
#[derive(Default)]
struct StatsCache {
    generation: Option<u64>,
    scopes: std::collections::HashMap<String, ScopeTotals>,
}

#[derive(Default)]
struct ScopeTotals {
    docs: Option<u64>,
    tokens: std::collections::HashMap<tantivy::schema::Field, u64>,
}

/// Scopes remembered per generation (one per principal, typically).
const MAX_CACHED_SCOPES: usize = 1024;

impl ScopedStats<'_> {
    fn cached<T>(&self, f: impl FnOnce(&mut ScopeTotals) -> T) -> T {
        let mut c = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.generation != Some(self.key.0) || c.scopes.len() >= MAX_CACHED_SCOPES {
            c.generation = Some(self.key.0);
            c.scopes.clear();
        }
        f(c.scopes.entry(self.key.1.clone()).or_default())
    }
}

impl tantivy::query::Bm25StatisticsProvider for ScopedStats<'_> {
    fn total_num_tokens(&self, field: tantivy::schema::Field) -> tantivy::Result<u64> {
        if let Some(n) = self.cached(|c| c.tokens.get(&field).copied()) {
            return Ok(n);
        }
        let n = self.count_tokens(field)?;
        self.cached(|c| c.tokens.insert(field, n));
        Ok(n)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        if let Some(n) = self.cached(|c| c.docs) {
            return Ok(n);
        }
        let n = self.searcher.search(self.scope, &tantivy::collector::Count)? as u64;
        self.cached(|c| c.docs = Some(n));
        Ok(n)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let mut memo = self
            .doc_freqs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = memo.get(term) {
            return Ok(*n);
        }
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.scope.box_clone()),
            (
                Occur::Must,
                Box::new(TermQuery::new(term.clone(), IndexRecordOption::Basic)),
            ),
        ]);
        let n = self.searcher.search(&q, &tantivy::collector::Count)? as u64;
        memo.insert(term.clone(), n);
        Ok(n)
    }
}

impl ScopedStats<'_> {
    /// Sum of the field's lengths over the live documents in scope.
    fn count_tokens(&self, field: tantivy::schema::Field) -> tantivy::Result<u64> {
        use tantivy::DocSet;
        let weight = self
            .scope
            .weight(tantivy::query::EnableScoring::disabled_from_searcher(
                self.searcher,
            ))?;
        let mut total = 0u64;
        for reader in self.searcher.segment_readers() {
            let norms = reader.get_fieldnorms_reader(field)?;
            let mut docs = weight.scorer(reader, 1.0)?;
            let mut doc = docs.doc();
            while doc != tantivy::TERMINATED {
                if !reader.is_deleted(doc) {
                    total += u64::from(norms.fieldnorm(doc));
                }
                doc = docs.advance();
            }
        }
        Ok(total)
    }
}

impl Lexical {
    pub fn open(dir: &Path) -> Result<Lexical> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
        let (schema, f) = schema();
        let index = if dir.join("meta.json").exists() {
            let index = Index::open_in_dir(dir).map_err(|e| IndexError::lexical(dir, e))?;
            if index.schema() != schema {
                return Err(IndexError::SchemaChanged(dir.to_path_buf()));
            }
            index
        } else {
            // Stored text is lz4-compressed in blocks: the index is about
            // the corpus's size, and reading a result's block costs
            // microseconds. Leak checks read the documents back
            // (`stored_documents`), never only the raw bytes.
            Index::builder()
                .schema(schema)
                .settings(tantivy::IndexSettings {
                    docstore_compression: tantivy::store::Compressor::Lz4,
                    ..Default::default()
                })
                .create_in_dir(dir)
                .map_err(|e| IndexError::lexical(dir, e))?
        };
        index
            .tokenizers()
            .register(CODE_TOKENIZER, TextAnalyzer::builder(CodeTokenizer).build());
        index.tokenizers().register(PROSE_TOKENIZER, prose_analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| IndexError::lexical(dir, e))?;
        Ok(Lexical {
            index,
            reader,
            f,
            stats: Default::default(),
        })
    }

    /// The index's one writer. Files a killed commit wrote but never made
    /// part of the index (a segment's `<seg>.<opstamp>.del`, say) are removed
    /// first: the same operations replayed would write the same names and
    /// fail with `FileAlreadyExists` for good.
    pub fn writer(&self) -> Result<IndexWriter> {
        let lexical_err = |e| IndexError::lexical(Path::new("lexical"), e);
        let w: IndexWriter = self
            .index
            .writer_with_num_threads(1, 64 << 20)
            .map_err(lexical_err)?;
        w.garbage_collect_files().wait().map_err(lexical_err)?;
        Ok(w)
    }

    pub fn delete_file(&self, w: &IndexWriter, source: &str, path: &str) {
        w.delete_term(Term::from_field_text(self.f.file_key, &file_key(source, path)));
    }

    pub fn delete_source(&self, w: &IndexWriter, source: &str) {
        w.delete_term(Term::from_field_text(self.f.source, source));
    }

    pub fn add(&self, w: &IndexWriter, c: &ChunkDoc) -> Result<()> {
        self.add_with(w, c, &Evidence::default())
    }

    /// [`Lexical::add`] with the chunk's definition headers and docs,
    /// indexed (not stored: both are parts of the content) in fields of
    /// their own.
    pub fn add_with(&self, w: &IndexWriter, c: &ChunkDoc, evidence: &Evidence<'_>) -> Result<()> {
        let f = &self.f;
        let mut d = TantivyDocument::default();
        d.add_text(f.chunk_id, &c.chunk_id);
        d.add_text(f.source, &c.source);
        d.add_text(f.file_key, file_key(&c.source, &c.path));
        d.add_u64(f.tier, u64::from(c.tier));
        d.add_text(f.path, &c.path);
        d.add_text(f.file_name, c.path.rsplit('/').next().unwrap_or(&c.path));
        d.add_text(f.language, &c.language);
        if let Some(s) = &c.symbol {
            d.add_text(f.symbol, s);
        }
        d.add_text(f.kind, &c.kind);
        d.add_u64(f.start_line, u64::from(c.start_line));
        d.add_u64(f.end_line, u64::from(c.end_line));
        d.add_text(f.content, &c.content);
        d.add_text(f.prose, &c.content);
        if let Some(sig) = evidence.signature {
            d.add_text(f.signature, sig);
        }
        if let Some(doc) = evidence.doc {
            d.add_text(f.doc, doc);
        }
        d.add_text(f.file_hash, &c.file_hash);
        d.add_text(f.chunk_hash, &c.chunk_hash);
        if let Some(commit) = &c.commit {
            d.add_text(f.commit, commit);
        }
        d.add_i64(f.ingested_at, c.ingested_at);
        d.add_u64(f.tiebreak, tiebreak_of(&c.chunk_id));
        w.add_document(d)
            .map_err(|e| IndexError::lexical(Path::new("lexical"), e))?;
        Ok(())
    }

    pub fn commit(&self, w: &mut IndexWriter) -> Result<()> {
        w.commit()
            .map_err(|e| IndexError::lexical(Path::new("lexical"), e))?;
        self.reader
            .reload()
            .map_err(|e| IndexError::lexical(Path::new("lexical"), e))?;
        Ok(())
    }

    /// Deleted documents still stored in segment files (deletes are
    /// logical until their segment is merged).
    /// Every document the index stores, deleted ones not yet expunged
    /// included, decompressed: what a check for text that must not be on
    /// disk reads, since the doc store is compressed.
    pub fn stored_documents(&self) -> Result<Vec<ChunkDoc>> {
        let mut out = Vec::new();
        self.each_stored(false, &mut |d| out.push(d))?;
        Ok(out)
    }

    /// Calls `f` with every live (not deleted) document, one at a time.
    pub fn each_live_document(&self, f: &mut dyn FnMut(ChunkDoc)) -> Result<()> {
        self.each_stored(true, f)
    }

    /// Every document in the segments' doc stores, decompressed; with
    /// `live_only`, those not deleted.
    fn each_stored(&self, live_only: bool, f: &mut dyn FnMut(ChunkDoc)) -> Result<()> {
        let lexical_err = |e| IndexError::lexical(Path::new("lexical"), e);
        self.reload()?;
        let searcher = self.reader.searcher();
        for segment in searcher.segment_readers() {
            let store = segment
                .get_store_reader(1)
                .map_err(|e| IndexError::lexical(Path::new("lexical"), tantivy::TantivyError::from(e)))?;
            let alive = if live_only { segment.alive_bitset() } else { None };
            for doc in store.iter::<TantivyDocument>(alive) {
                f(self.to_chunk(&doc.map_err(lexical_err)?));
            }
        }
        Ok(())
    }

    pub fn deleted_docs(&self) -> Result<u64> {
        let metas = self
            .index
            .searchable_segment_metas()
            .map_err(|e| IndexError::lexical(Path::new("lexical"), e))?;
        Ok(metas.iter().map(|m| u64::from(m.num_deleted_docs())).sum())
    }

    /// Rewrites every segment that holds deleted documents without them
    /// and removes the files no longer in use, so deleted text is gone
    /// from disk, not only from results. Needs the writer (no pass running).
    pub fn expunge_deletes(&self) -> Result<()> {
        let lexical_err = |e| IndexError::lexical(Path::new("lexical"), e);
        let ids: Vec<tantivy::index::SegmentId> = self
            .index
            .searchable_segment_metas()
            .map_err(lexical_err)?
            .iter()
            .filter(|m| m.has_deletes())
            .map(|m| m.id())
            .collect();
        let mut w = self.writer()?;
        if !ids.is_empty() {
            w.merge(&ids).wait().map_err(lexical_err)?;
        }
        w.garbage_collect_files().wait().map_err(lexical_err)?;
        w.wait_merging_threads().map_err(lexical_err)?;
        self.reload()
    }

    /// Makes commits by other writers (another process) visible.
    pub fn reload(&self) -> Result<()> {
        self.reader
            .reload()
            .map_err(|e| IndexError::lexical(Path::new("lexical"), e))
    }

    /// The best `limit` chunks for `query` among those `filter` lets through.
    pub fn search(&self, query: &str, filter: &Filter, limit: usize) -> Result<Vec<(f32, ChunkDoc)>> {
        self.search_parts(&[QueryPart::new(query, 1.0)], filter, limit)
    }

    /// [`Lexical::search`] for a query made of weighted parts (the whole
    /// text, and identifiers or paths found in it that count more).
    pub fn search_parts(
        &self,
        parts: &[QueryPart],
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<(f32, ChunkDoc)>> {
        if filter.sources.is_empty() || filter.max_tier == 0 {
            return Ok(Vec::new());
        }
        let Some(user) = self.text_query(parts) else {
            return Ok(Vec::new());
        };
        let scope = self.scope_query(&filter.sources, filter.max_tier);
        // The scope filters and never scores: its source and tier terms
        // would otherwise add an IDF that differs by source and tier, and
        // rank a rarer source's chunks above an equal match elsewhere.
        let only: Box<dyn Query> = Box::new(tantivy::query::ConstScoreQuery::new(scope.box_clone(), 0.0));
        let q = BooleanQuery::new(vec![(Occur::Must, user), (Occur::Must, only)]);
        // BM25 statistics over the caller's scope only: what it cannot see
        // never changes how what it can see is ranked.
        let searcher = self.reader.searcher();
        let stats = self.scoped_stats(&searcher, &scope, filter);
        let ranked = TopDocs::with_limit(limit.max(1)).tweak_score(|segment: &tantivy::SegmentReader| {
            let tiebreak = segment
                .fast_fields()
                .u64(TIEBREAK)
                .ok()
                .map(|c| c.first_or_default_col(0));
            move |doc: tantivy::DocId, score: tantivy::Score| {
                (
                    score,
                    std::cmp::Reverse(tiebreak.as_ref().map_or(0, |c| c.get_val(doc))),
                )
            }
        });
        let top = searcher
            .search_with_statistics_provider(&q, &ranked, &stats)
            .map_err(|e| IndexError::lexical(Path::new("lexical"), e))?;
        self.load(&searcher, top.into_iter().map(|((score, _), addr)| (score, addr)))
    }

    /// The scoring query for `parts`: a disjunction of the tokens the
    /// fields' analysers make of the text (whole words and identifiers), each boosted by its field's
    /// weight and its part's weight (a token repeated counts again), plus
    /// exact phrases for words that split into several positions (`a/b.py`,
    /// `pkg.module`). Plain text, never query syntax: no operators in any
    /// case (`AND`, `NOT`, `-x`, `field:`), so an agent's "0-dimensional
    /// (2D)" or "... does NOT work" is only words. `None` when no field
    /// has a token.
    fn text_query(&self, parts: &[QueryPart]) -> Option<Box<dyn Query>> {
        let terms = query_terms(parts);
        let schema = self.index.schema();
        let field = |i: usize| schema.get_field(QUERY_FIELDS[i].name).ok();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for ((i, text), w) in terms.weights {
            let Some(f) = field(i) else { continue };
            let term = Term::from_field_text(f, &text);
            let q: Box<dyn Query> = Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
            clauses.push((Occur::Should, Box::new(BoostQuery::new(q, w))));
        }
        for (i, words, w) in terms.phrases {
            let Some(f) = field(i) else { continue };
            let terms = words.iter().map(|t| Term::from_field_text(f, t)).collect();
            let q: Box<dyn Query> = Box::new(PhraseQuery::new(terms));
            clauses.push((Occur::Should, Box::new(BoostQuery::new(q, w))));
        }
        (!clauses.is_empty()).then(|| Box::new(BooleanQuery::new(clauses)) as Box<dyn Query>)
    }

    fn scoped_stats<'a>(
        &'a self,
        searcher: &'a tantivy::Searcher,
        scope: &'a BooleanQuery,
        filter: &Filter,
    ) -> ScopedStats<'a> {
        let mut scope_key = filter.sources.clone();
        scope_key.sort();
        ScopedStats {
            searcher,
            scope,
            key: (
                searcher.generation().generation_id(),
                format!("{}|{}", filter.max_tier, scope_key.join("\u{0}")),
            ),
            cache: &self.stats,
            doc_freqs: Default::default(),
        }
    }

    /// Every chunk of one file, in line order.
    pub fn docs_for_file(&self, source: &str, path: &str) -> Result<Vec<ChunkDoc>> {
        let q = TermQuery::new(
            Term::from_field_text(self.f.file_key, &file_key(source, path)),
            IndexRecordOption::Basic,
        );
        let mut docs = self.fetch(&q, 100_000)?;
        docs.sort_by_key(|d| d.start_line);
        Ok(docs)
    }

    /// [`Lexical::docs_for_file`] with each chunk's definition evidence.
    pub fn docs_for_file_with_evidence(
        &self,
        source: &str,
        path: &str,
    ) -> Result<Vec<(ChunkDoc, OwnedEvidence)>> {
        let docs = self.docs_for_file(source, path)?;
        // Headers and docs are indexed, not stored (they would grow the
        // data dir for every deployment): chunking the file's indexed text
        // again (the redacted text, each line in place) gives them back,
        // matched by line span; a chunk that does not come out the same
        // has none.
        let Some(language) = docs.first().map(|d| d.language.clone()) else {
            return Ok(Vec::new());
        };
        let text = crate::alignment::text_of(&docs);
        let mut found: std::collections::HashMap<(u32, u32), OwnedEvidence> =
            crate::chunk::chunk(&text, &language)
                .into_iter()
                .map(|c| {
                    (
                        (c.start_line, c.end_line),
                        OwnedEvidence {
                            signature: c.signature,
                            doc: c.doc,
                        },
                    )
                })
                .collect();
        Ok(docs
            .into_iter()
            .map(|d| {
                let e = found.remove(&(d.start_line, d.end_line)).unwrap_or_default();
                (d, e)
            })
            .collect())
    }

    /// The average length in tokens of each of [`QUERY_FIELDS`] over the
    /// index (deleted documents not yet merged away included), for
    /// BM25's length normalisation elsewhere.
    pub fn average_lengths(&self) -> [f32; QUERY_FIELDS.len()] {
        let searcher = self.reader.searcher();
        let schema = self.index.schema();
        let docs: u64 = searcher
            .segment_readers()
            .iter()
            .map(|r| u64::from(r.max_doc()))
            .sum();
        let mut out = [0.0; QUERY_FIELDS.len()];
        for (i, q) in QUERY_FIELDS.iter().enumerate() {
            let Ok(field) = schema.get_field(q.name) else {
                continue;
            };
            let tokens: u64 = searcher
                .segment_readers()
                .iter()
                .filter_map(|r| r.inverted_index(field).ok())
                .map(|ii| ii.total_num_tokens())
                .sum();
            out[i] = if docs == 0 {
                0.0
            } else {
                tokens as f32 / docs as f32
            };
        }
        out
    }

    /// Chunks by id (those not in the index are left out), in `ids` order.
    pub fn docs_by_id(&self, ids: &[&str]) -> Result<Vec<ChunkDoc>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let q = TermQuery::new(
                Term::from_field_text(self.f.chunk_id, id),
                IndexRecordOption::Basic,
            );
            out.extend(self.fetch(&q, 1)?);
        }
        Ok(out)
    }

    fn fetch(&self, q: &dyn Query, limit: usize) -> Result<Vec<ChunkDoc>> {
        Ok(self.fetch_scored(q, limit)?.into_iter().map(|(_, d)| d).collect())
    }

    /// The best `limit` chunks for `q`, with their scores.
    fn fetch_scored(&self, q: &dyn Query, limit: usize) -> Result<Vec<(f32, ChunkDoc)>> {
        let searcher = self.reader.searcher();
        let top = searcher
            .search(q, &TopDocs::with_limit(limit.max(1)).order_by_score())
            .map_err(|e| IndexError::lexical(Path::new("lexical"), e))?;
        self.load(&searcher, top)
    }

    /// The stored chunks at `hits`, with their scores, in order.
    fn load(
        &self,
        searcher: &tantivy::Searcher,
        hits: impl IntoIterator<Item = (f32, tantivy::DocAddress)>,
    ) -> Result<Vec<(f32, ChunkDoc)>> {
        hits.into_iter()
            .map(|(score, addr)| {
                let doc: TantivyDocument = searcher
                    .doc(addr)
                    .map_err(|e| IndexError::lexical(Path::new("lexical"), e))?;
                Ok((score, self.to_chunk(&doc)))
            })
            .collect()
    }

    /// Number of chunks of `source` in the committed index.
    pub fn count_source(&self, source: &str) -> u64 {
        let q = TermQuery::new(
            Term::from_field_text(self.f.source, source),
            IndexRecordOption::Basic,
        );
        self.reader
            .searcher()
            .search(&q, &tantivy::collector::Count)
            .map_or(0, |n| n as u64)
    }

    /// Documents of `sources` at tiers 1 to `max_tier`: what a caller with
    /// that scope may search (and what its BM25 statistics are over).
    fn scope_query(&self, sources: &[String], max_tier: u8) -> BooleanQuery {
        let any_of = |terms: Vec<Term>| -> Box<dyn Query> {
            Box::new(BooleanQuery::new(
                terms
                    .into_iter()
                    .map(|t| {
                        (
                            Occur::Should,
                            Box::new(TermQuery::new(t, IndexRecordOption::Basic)) as Box<dyn Query>,
                        )
                    })
                    .collect(),
            ))
        };
        let sources = any_of(
            sources
                .iter()
                .map(|s| Term::from_field_text(self.f.source, s))
                .collect(),
        );
        let tiers = any_of(
            (1..=u64::from(max_tier))
                .map(|t| Term::from_field_u64(self.f.tier, t))
                .collect(),
        );
        BooleanQuery::new(vec![(Occur::Must, sources), (Occur::Must, tiers)])
    }

    /// Number of chunks a caller scoped to `sources` up to `max_tier` may see.
    pub fn count_within(&self, sources: &[String], max_tier: u8) -> u64 {
        if sources.is_empty() || max_tier == 0 {
            return 0;
        }
        self.reader
            .searcher()
            .search(&self.scope_query(sources, max_tier), &tantivy::collector::Count)
            .map_or(0, |n| n as u64)
    }

    pub fn total_chunks(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn to_chunk(&self, d: &TantivyDocument) -> ChunkDoc {
        let f = &self.f;
        let s = |field: Field| d.get_first(field).and_then(|v| v.as_str()).map(String::from);
        let u = |field: Field| d.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
        ChunkDoc {
            chunk_id: s(f.chunk_id).unwrap_or_default(),
            source: s(f.source).unwrap_or_default(),
            tier: u(f.tier) as u8,
            path: s(f.path).unwrap_or_default(),
            language: s(f.language).unwrap_or_default(),
            symbol: s(f.symbol),
            kind: s(f.kind).unwrap_or_default(),
            start_line: u(f.start_line) as u32,
            end_line: u(f.end_line) as u32,
            content: s(f.content).unwrap_or_default(),
            file_hash: s(f.file_hash).unwrap_or_default(),
            chunk_hash: s(f.chunk_hash).unwrap_or_default(),
            commit: s(f.commit),
            ingested_at: d.get_first(f.ingested_at).and_then(|v| v.as_i64()).unwrap_or(0),
        }
    }
}

/// Where tier 2 reads chunks from: the local lexical index (tantivy), or
/// a shared one every replica reads (the chunks and their term vectors in
/// Qdrant, [`crate::vector::qdrant::QdrantStore`]).
pub trait ChunkIndex: Send + Sync + std::fmt::Debug {
    /// The best `limit` chunks for `parts` among those `filter` admits,
    /// by BM25 over the fields of [`QUERY_FIELDS`].
    fn search_parts(
        &self,
        parts: &[QueryPart],
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<(f32, ChunkDoc)>>;
    /// Chunks by id (those not held are left out), in `ids` order.
    fn docs_by_id(&self, ids: &[&str]) -> Result<Vec<ChunkDoc>>;
    /// Every chunk of one file, in line order.
    fn docs_for_file(&self, source: &str, path: &str) -> Result<Vec<ChunkDoc>>;
    /// Chunks a caller scoped to `sources` up to `max_tier` may see.
    fn count_within(&self, sources: &[String], max_tier: u8) -> Result<u64>;
    /// Every chunk held (of this deployment).
    fn total_chunks(&self) -> Result<u64>;
    /// Makes what a writer committed since visible.
    fn reload(&self) -> Result<()>;
    /// Whether the indexer publishes its manifests here (a shared index):
    /// readers take them from [`ChunkIndex::manifest`], not the data dir.
    fn shares_manifests(&self) -> bool {
        false
    }
    /// The version of a source's published manifest (`None`: none).
    fn manifest_version(&self, _source: &str) -> Result<Option<String>> {
        Ok(None)
    }
    /// A source's published manifest and its version.
    fn manifest(&self, _source: &str) -> Result<Option<(String, crate::manifest::SourceManifest)>> {
        Ok(None)
    }
}

impl ChunkIndex for Lexical {
    fn search_parts(
        &self,
        parts: &[QueryPart],
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<(f32, ChunkDoc)>> {
        Lexical::search_parts(self, parts, filter, limit)
    }

    fn docs_by_id(&self, ids: &[&str]) -> Result<Vec<ChunkDoc>> {
        Lexical::docs_by_id(self, ids)
    }

    fn docs_for_file(&self, source: &str, path: &str) -> Result<Vec<ChunkDoc>> {
        Lexical::docs_for_file(self, source, path)
    }

    fn count_within(&self, sources: &[String], max_tier: u8) -> Result<u64> {
        Ok(Lexical::count_within(self, sources, max_tier))
    }

    fn total_chunks(&self) -> Result<u64> {
        Ok(Lexical::total_chunks(self))
    }

    fn reload(&self) -> Result<()> {
        Lexical::reload(self)
    }
}
