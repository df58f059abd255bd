//! A small reader of CSV (RFC 4180): fields separated by commas, quoted with `"` when they
//! hold a comma, a quote (doubled) or a line break; records end with LF or CRLF. Used by
//! the bulk upload and by imports; a malformed file is refused with the line of the fault.

/// A CSV file's records, each a list of fields, with the line each record starts on.
pub fn records(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut start_line = 1;
    // Whether the current field was quoted, and whether the record has any content.
    let mut quoted = false;
    let mut started = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if !started_field(&field, quoted) => {
                quoted = true;
                started = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                        None => {
                            return Err(format!("line {start_line}: a quoted field is not closed"));
                        }
                    }
                }
                match chars.peek() {
                    None | Some(',' | '\n' | '\r') => {}
                    Some(_) => {
                        return Err(format!("line {line}: a closing quote must end its field"));
                    }
                }
            }
            '"' => return Err(format!("line {line}: a quote inside an unquoted field")),
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
                started = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if started || !field.is_empty() {
                    fields.push(std::mem::take(&mut field));
                    records.push((start_line, std::mem::take(&mut fields)));
                }
                quoted = false;
                started = false;
                line += 1;
                start_line = line;
            }
            c => {
                field.push(c);
                started = true;
            }
        }
    }
    if started || !field.is_empty() {
        fields.push(field);
        records.push((start_line, fields));
    }
    Ok(records)
}

/// Whether a field already has content (a quote then is not an opening quote).
fn started_field(field: &str, quoted: bool) -> bool {
    quoted || !field.is_empty()
}

/// Quotes `field` for a CSV file when it needs it.
pub fn quote(field: &str) -> std::borrow::Cow<'_, str> {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\"")).into()
    } else {
        field.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<Vec<String>> {
        records(text).unwrap().into_iter().map(|(_, f)| f).collect()
    }

    #[test]
    fn reads_plain_quoted_and_multi_line_fields() {
        assert_eq!(
            fields("a,b\r\n\"x,1\",\"say \"\"hi\"\"\"\n\"two\nlines\",\n"),
            vec![
                vec!["a".to_owned(), "b".to_owned()],
                vec!["x,1".to_owned(), "say \"hi\"".to_owned()],
                vec!["two\nlines".to_owned(), String::new()],
            ]
        );
        assert_eq!(
            fields("last,line"),
            vec![vec!["last".to_owned(), "line".to_owned()]]
        );
        assert_eq!(fields("\n\n"), Vec::<Vec<String>>::new());
    }

    #[test]
    fn records_know_their_line_and_faults_name_theirs() {
        let found = records("h\n\"a\nb\"\nc\n").unwrap();
        assert_eq!(found.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 2, 4]);
        assert!(records("a\n\"open").unwrap_err().starts_with("line 2"));
        assert!(records("a\nb\"c\n").unwrap_err().starts_with("line 2"));
        assert!(records("\"a\"b\n").unwrap_err().starts_with("line 1"));
    }

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
