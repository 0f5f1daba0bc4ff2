//! What a failure artifact is on disk — the [`Artifact`] record, its [`FORMAT`] version and
//! the pokesim versions that may read it — and reading its JSON with bounded memory: typed and streaming, straight from
//! the file (no intermediate `serde_json::Value`, which costs about twelve times the text),
//! with the decision list capped at [`MAX_DECISIONS`] while it is read. A problem names the
//! file, the line and the field it was found in.
//!
//! The checks keep the order of the documents pokesim writes (`format` first): a future
//! format is reported as such, then unknown and missing fields, the pokesim version and the
//! decisions' values.

use std::cell::Cell;
use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use sim_core::Violation;

use crate::input::{InputError, MAX_SCENARIO_BYTES};

/// The artifact format this pokesim writes. 3: a scenario with a protocol compiled from C names
/// its memory model (`[memory] model`), whose default became x86-TSO.
pub const FORMAT: u32 = 3;

/// The oldest format this pokesim reads. A format-2 artifact's scenario without a `[memory]`
/// table ran under SC, the only model then: [`Artifact::scenario_text`] says so.
pub const OLDEST_FORMAT: u32 = 2;

/// A failure artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// The pokesim that wrote it.
    pub pokesim_version: String,
    /// The scenario, as scenario-file TOML (its `expect` is the violation kind).
    pub scenario: String,
    /// The seed the decisions were drawn from (informative; replay uses the decisions).
    pub seed: u64,
    /// The strategy that drew them.
    pub strategy: String,
    /// The decisions of the run up to its last nonzero choice, `[options, choice]`.
    pub decisions: Vec<(u32, u32)>,
    /// Then this many choices of option 0, and the run ends.
    pub zeros_after: u64,
    /// The violation.
    pub violation: Violation,
    /// Trace hash of the run.
    pub trace_hash: String,
    /// Ticks the run took.
    pub ticks: u64,
}

impl Artifact {
    /// The scenario as it ran: a format-2 artifact without a `[memory]` table ran under SC (the
    /// default then, for every protocol), so that is added; later formats name the model of
    /// every C protocol themselves.
    pub fn scenario_text(&self) -> std::borrow::Cow<'_, str> {
        let names_memory = self.scenario.lines().any(|l| l.trim() == "[memory]");
        if self.format >= 3 || names_memory {
            return std::borrow::Cow::Borrowed(&self.scenario);
        }
        std::borrow::Cow::Owned(format!("{}\n[memory]\nmodel = \"sc\"\n", self.scenario.trim_end()))
    }
}

/// Refuses an artifact written by a newer pokesim (it may use meanings this one lacks).
pub(crate) fn check_version(v: &str) -> Result<(), String> {
    let parse = |s: &str| -> Option<Vec<u64>> {
        let parts: Vec<u64> = s.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        (parts.len() == 3).then_some(parts)
    };
    let ours = env!("CARGO_PKG_VERSION");
    match (parse(v), parse(ours)) {
        (Some(theirs), Some(mine)) if theirs <= mine => Ok(()),
        (Some(_), _) => Err(format!("written by pokesim {v}, newer than this pokesim {ours}")),
        (None, _) => Err(format!("'{v}' is not a version (MAJOR.MINOR.PATCH)")),
    }
}

/// The most decisions an artifact may hold. A run records one scheduling pick per tick and
/// an epoch choice per fetched unit with more than one possible store epoch, so its decision
/// list grows with its ticks; the default tick budget is at least `MIN_DEFAULT_BUDGET`
/// (10⁶) ticks and `BUDGET_FACTOR` (16) times a run's expected length
/// (`sim_core::plan`), and no shipped or generated scenario's violating run comes near 10⁶
/// recorded decisions. 2²³ (8,388,608, 64 MiB in memory) leaves room for runs eight times
/// longer than the largest default budget of a one-million-tick scenario, while a file that
/// claims more is refused while it is read — before its list costs more memory than that.
pub const MAX_DECISIONS: usize = 1 << 23;

/// The fields of an artifact, as they arrive.
#[derive(Default)]
struct Fields {
    format: Option<Format>,
    pokesim_version: Option<String>,
    scenario: Option<String>,
    seed: Option<u64>,
    strategy: Option<String>,
    decisions: Option<Vec<(u32, u32)>>,
    zeros_after: Option<u64>,
    violation: Option<Violation>,
    trace_hash: Option<String>,
    ticks: Option<u64>,
    unknown: Option<String>,
}

/// The `format` field: a number, or anything else (not an artifact).
#[derive(Clone, Copy)]
enum Format {
    Number(u64),
    Other,
}

/// Where the reader is: the field whose value is being read, and whether the decision list
/// overflowed or the format is a future one (so that the error names them).
#[derive(Default)]
struct Place {
    field: Cell<Option<&'static str>>,
    problem: Cell<Option<Problem>>,
}

#[derive(Clone, Copy)]
enum Problem {
    TooManyDecisions,
    Format(u64),
}

/// Parses an artifact from `reader`; `file` names it in errors.
pub fn parse(file: &str, reader: impl Read) -> Result<Artifact, InputError> {
    let place = Place::default();
    let mut de = serde_json::Deserializer::from_reader(reader);
    let fields = ArtifactSeed(&place).deserialize(&mut de).and_then(|f| de.end().map(|()| f));
    let fields = fields.map_err(|e| located(file, &place, &e))?;
    check(file, fields)
}

/// The error `e` found while reading, located by line and by the field being read.
fn located(file: &str, place: &Place, e: &serde_json::Error) -> InputError {
    use serde_json::error::Category;
    let at = |field: Option<&str>, message: String| InputError {
        line: Some(e.line()).filter(|&l| l > 0),
        field: field.map(str::to_string),
        ..InputError::file(file, message)
    };
    match (place.problem.get(), e.classify()) {
        (Some(Problem::Format(f)), _) => unsupported(file, f),
        (Some(Problem::TooManyDecisions), _) => at(
            Some("decisions"),
            format!("more than {MAX_DECISIONS} decisions, the most an artifact holds; refused before reading further"),
        ),
        (_, Category::Io) => InputError::file(file, e.to_string()),
        (_, Category::Syntax | Category::Eof) => at(place.field.get(), format!("corrupt or truncated artifact: {e}")),
        (_, Category::Data) => at(place.field.get(), format!("corrupt artifact: {e}")),
    }
}

fn unsupported(file: &str, f: u64) -> InputError {
    let msg = format!("artifact format {f} is not supported (this pokesim reads formats {OLDEST_FORMAT} to {FORMAT})");
    InputError { field: Some("format".into()), ..InputError::file(file, msg) }
}

/// The whole-document checks, in the order the old reader made them.
fn check(file: &str, f: Fields) -> Result<Artifact, InputError> {
    let err =
        |field: &str, message: String| InputError { field: Some(field.into()), ..InputError::file(file, message) };
    match f.format {
        Some(Format::Number(n)) if (u64::from(OLDEST_FORMAT)..=u64::from(FORMAT)).contains(&n) => {}
        Some(Format::Number(n)) => return Err(unsupported(file, n)),
        _ => return Err(err("format", "missing: not a pokesim artifact".into())),
    }
    if let Some(name) = f.unknown {
        return Err(err(&name, format!("corrupt artifact: unknown field `{name}`")));
    }
    let missing = |name: &str| err(name, format!("corrupt artifact: missing field `{name}`"));
    let a = Artifact {
        format: match f.format {
            Some(Format::Number(n)) => n as u32,
            _ => FORMAT,
        },
        pokesim_version: f.pokesim_version.ok_or_else(|| missing("pokesim_version"))?,
        scenario: f.scenario.ok_or_else(|| missing("scenario"))?,
        seed: f.seed.ok_or_else(|| missing("seed"))?,
        strategy: f.strategy.ok_or_else(|| missing("strategy"))?,
        decisions: f.decisions.ok_or_else(|| missing("decisions"))?,
        zeros_after: f.zeros_after.ok_or_else(|| missing("zeros_after"))?,
        violation: f.violation.ok_or_else(|| missing("violation"))?,
        trace_hash: f.trace_hash.ok_or_else(|| missing("trace_hash"))?,
        ticks: f.ticks.ok_or_else(|| missing("ticks"))?,
    };
    check_version(&a.pokesim_version).map_err(|m| err("pokesim_version", m))?;
    if a.scenario.len() as u64 > MAX_SCENARIO_BYTES {
        let msg = format!("is {} bytes, more than the {MAX_SCENARIO_BYTES} of a scenario file", a.scenario.len());
        return Err(err("scenario", msg));
    }
    if let Some((i, (of, choice))) = a.decisions.iter().enumerate().find(|(_, (of, c))| *of < 2 || c >= of) {
        return Err(err("decisions", format!("entry {i} [{of}, {choice}] is not [options >= 2, choice < options]")));
    }
    Ok(a)
}

/// The artifact object.
struct ArtifactSeed<'p>(&'p Place);

impl<'de> DeserializeSeed<'de> for ArtifactSeed<'_> {
    type Value = Fields;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Fields, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ArtifactSeed<'_> {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a pokesim artifact (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let field = match key {
                Key::Known(field) => field,
                Key::Unknown(name) => {
                    map.next_value::<IgnoredAny>()?;
                    f.unknown.get_or_insert(name);
                    continue;
                }
            };
            self.0.field.set(Some(field.name()));
            match field {
                Field::Format => f.format = Some(self.format(map.next_value()?)?),
                Field::PokesimVersion => f.pokesim_version = Some(map.next_value()?),
                Field::Scenario => f.scenario = Some(map.next_value()?),
                Field::Seed => f.seed = Some(map.next_value()?),
                Field::Strategy => f.strategy = Some(map.next_value()?),
                Field::Decisions => f.decisions = Some(map.next_value_seed(DecisionsSeed(self.0))?),
                Field::ZerosAfter => f.zeros_after = Some(map.next_value()?),
                Field::Violation => f.violation = Some(map.next_value()?),
                Field::TraceHash => f.trace_hash = Some(map.next_value()?),
                Field::Ticks => f.ticks = Some(map.next_value()?),
            }
            self.0.field.set(None);
        }
        Ok(f)
    }
}

impl ArtifactSeed<'_> {
    /// A format number this pokesim does not read stops the reading at once: the rest of a
    /// future artifact may mean other things.
    fn format<E: de::Error>(&self, v: Format) -> Result<Format, E> {
        match v {
            Format::Number(n) if !(u64::from(OLDEST_FORMAT)..=u64::from(FORMAT)).contains(&n) => {
                self.0.problem.set(Some(Problem::Format(n)));
                Err(E::custom(format!("artifact format {n}")))
            }
            _ => Ok(v),
        }
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
        d.deserialize_any(FormatVisitor)
    }
}

struct FormatVisitor;

impl<'de> Visitor<'de> for FormatVisitor {
    type Value = Format;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a format number")
    }

    fn visit_u64<E>(self, v: u64) -> Result<Format, E> {
        Ok(Format::Number(v))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Format, E> {
        Ok(Format::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Format, E> {
        Ok(Format::Other)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Format, E> {
        Ok(Format::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Format, E> {
        Ok(Format::Other)
    }

    fn visit_unit<E>(self) -> Result<Format, E> {
        Ok(Format::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Format, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Format::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Format, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Format::Other)
    }
}

/// The decision list, refused as soon as it grows past [`MAX_DECISIONS`].
struct DecisionsSeed<'p>(&'p Place);

impl<'de> DeserializeSeed<'de> for DecisionsSeed<'_> {
    type Value = Vec<(u32, u32)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for DecisionsSeed<'_> {
    type Value = Vec<(u32, u32)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of [options, choice] pairs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(d) = seq.next_element::<(u32, u32)>()? {
            if list.len() == MAX_DECISIONS {
                self.0.problem.set(Some(Problem::TooManyDecisions));
                return Err(de::Error::custom("too many decisions"));
            }
            list.push(d);
        }
        Ok(list)
    }
}

/// The fields of an artifact.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Format,
    PokesimVersion,
    Scenario,
    Seed,
    Strategy,
    Decisions,
    ZerosAfter,
    Violation,
    TraceHash,
    Ticks,
}

/// Each field with its name in the document.
const FIELDS: [(Field, &str); 10] = [
    (Field::Format, "format"),
    (Field::PokesimVersion, "pokesim_version"),
    (Field::Scenario, "scenario"),
    (Field::Seed, "seed"),
    (Field::Strategy, "strategy"),
    (Field::Decisions, "decisions"),
    (Field::ZerosAfter, "zeros_after"),
    (Field::Violation, "violation"),
    (Field::TraceHash, "trace_hash"),
    (Field::Ticks, "ticks"),
];

impl Field {
    fn name(self) -> &'static str {
        FIELDS.iter().find(|(f, _)| *f == self).map_or("", |(_, n)| n)
    }
}

/// A key of the artifact object: a field, or an unknown name (at most 64 characters of it,
/// for the message).
enum Key {
    Known(Field),
    Unknown(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        d.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(FIELDS
            .iter()
            .find(|(_, name)| *name == v)
            .map_or_else(|| Key::Unknown(v.chars().take(64).collect()), |&(f, _)| Key::Known(f)))
    }
}
