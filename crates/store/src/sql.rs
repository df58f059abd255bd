//! A small builder for statements whose shape depends on the request (optional filters),
//! keeping every value a bound parameter: user input never becomes SQL text.

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// SQL text with `$n` placeholders and their values, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) binds: Vec<Bind>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            binds: Vec::new(),
        }
    }

    /// Appends literal SQL (never user input).
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Adds a parameter and returns its placeholder.
    pub(crate) fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }
}

/// Binds every value of `$sql` to `$query` (a macro, so it works on either engine's query).
macro_rules! bind_all {
    ($query:expr, $sql:expr) => {{
        let mut query = $query;
        for value in &$sql.binds {
            query = match value {
                $crate::sql::Bind::Text(text) => query.bind(text.as_str()),
                $crate::sql::Bind::Int(int) => query.bind(*int),
            };
        }
        query
    }};
}
pub(crate) use bind_all;
