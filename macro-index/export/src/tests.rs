//! Parser tests: the contract's example, every error, recovery, and file scanning.

use cell_resolver::ProblemCode;

use super::*;

const CONTRACT: &str = r#"
cell_sdk::export! {
    format = 1;
    cell = "celldb";
    macros = celldb_macros;

    /// Persist a struct.
    attribute persist {
        helpers = [key, index, unique, auto_inc];
        args {
            table: str?,
            replicate: "local" | "gossip" | "raft" | "sharded" = "local",
            durability: "sync" | "buffered" = "sync",
        }
    }
    function query {}
    derive Table {}

    api = [insert, get, update, delete, scan, transaction, Db, Error];
}
"#;

fn errors_of(body: &str) -> Vec<(ProblemCode, String)> {
    let file = parse_file(&format!("export! {{ {body} }}"));
    file.decls[0]
        .errors
        .iter()
        .map(|e| (e.code, e.message.clone()))
        .collect()
}

const HEAD: &str = "format = 1; cell = \"c\"; macros = c_macros;";

#[test]
fn the_contract_example_parses_completely() {
    let file = parse_file(CONTRACT);
    assert_eq!(file.decls.len(), 1);
    let Parsed { decl, errors } = &file.decls[0];
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(decl.format.as_ref().unwrap().value, 1);
    assert_eq!(decl.cell.as_ref().unwrap().value, "celldb");
    assert_eq!(decl.macros_crate.as_ref().unwrap().value, "celldb_macros");
    let kinds: Vec<(MacroKind, &str)> = decl
        .macros
        .iter()
        .map(|m| (m.kind, m.name.value.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (MacroKind::Attribute, "persist"),
            (MacroKind::Function, "query"),
            (MacroKind::Derive, "Table"),
        ]
    );
    let persist = &decl.macros[0];
    assert_eq!(persist.docs.as_deref(), Some("Persist a struct."));
    let helpers: Vec<&str> = persist
        .helpers
        .iter()
        .map(|h| h.name.value.as_str())
        .collect();
    assert_eq!(helpers, ["key", "index", "unique", "auto_inc"]);
    assert_eq!(persist.args.len(), 3);
    let table = &persist.args[0];
    assert_eq!(table.name.as_ref().unwrap().value, "table");
    assert_eq!(table.kind, ValueKind::Str);
    assert!(table.optional);
    let replicate = &persist.args[1];
    assert_eq!(
        replicate.kind,
        ValueKind::OneOf(vec![
            "local".into(),
            "gossip".into(),
            "raft".into(),
            "sharded".into()
        ])
    );
    assert_eq!(
        replicate.default.as_ref().unwrap().value,
        Literal::Str("local".into())
    );
    let api: Vec<&str> = decl.api.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(
        api,
        [
            "insert",
            "get",
            "update",
            "delete",
            "scan",
            "transaction",
            "Db",
            "Error"
        ]
    );
}

#[test]
fn locations_are_line_and_column() {
    let file = parse_file(CONTRACT);
    let decl = &file.decls[0].decl;
    let persist = &decl.macros[0].name;
    assert_eq!(
        persist.span.start,
        LineColumn {
            line: 8,
            column: 14
        }
    );
    assert_eq!(
        persist.span.end,
        LineColumn {
            line: 8,
            column: 21
        }
    );
    assert_eq!(&CONTRACT[persist.span.bytes.clone()], "persist");
    let key = &decl.macros[0].helpers[0].name;
    assert_eq!(key.span.start.line, 9);
}

#[test]
fn positional_and_kinds() {
    let file = parse_file(&format!(
        "export! {{ {HEAD} attribute range {{ args {{ _: expr }} }} \
         attribute length {{ args {{ min: int?, max: int?, trim: bool = false }} }} }}"
    ));
    let Parsed { decl, errors } = &file.decls[0];
    assert!(errors.is_empty(), "{errors:?}");
    let range = &decl.macros[0].args[0];
    assert!(range.name.is_none());
    assert_eq!(range.kind, ValueKind::Expr);
    let length = &decl.macros[1].args;
    assert_eq!(
        length[2].default.as_ref().unwrap().value,
        Literal::Bool(false)
    );
}

#[test]
fn helpers_may_declare_arguments() {
    let file = parse_file(&format!(
        "export! {{ {HEAD} attribute schema {{ helpers = [email, range(_: expr), \
         length(min: int?, max: int?),]; }} }}"
    ));
    let Parsed { decl, errors } = &file.decls[0];
    assert!(errors.is_empty(), "{errors:?}");
    let schema = &decl.macros[0];
    assert!(schema.helper("email").unwrap().args.is_empty());
    assert_eq!(
        schema.helper("range").unwrap().args[0].kind,
        ValueKind::Expr
    );
    let length = &schema.helper("length").unwrap().args;
    assert_eq!(length[1].name.as_ref().unwrap().value, "max");
    assert!(length[1].optional);
}

#[test]
fn missing_head_entries_are_reported() {
    let errors = errors_of("attribute a {}");
    let messages: Vec<&str> = errors.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        messages,
        [
            "missing `format`: add `format = 1;`",
            "missing `cell`: add `cell = \"my-cell\";`",
            "missing `macros`: add `macros = my_cell_macros;`",
        ]
    );
    assert!(errors.iter().all(|e| e.0 == ProblemCode::MalformedExport));
}

#[test]
fn unsupported_format_has_its_own_code() {
    let file = parse_file("export! { format = 2; cell = \"c\"; macros = m; }");
    let errors = &file.decls[0].errors;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code, ProblemCode::UnsupportedExportFormat);
    assert!(
        errors[0]
            .message
            .starts_with("export format 2 is not supported")
    );
    assert_eq!(errors[0].span.start.column, 19);
}

#[test]
fn one_broken_entry_does_not_lose_the_others() {
    let file = parse_file(&format!(
        "export! {{ {HEAD} attribute a {{ helpers = [x,] }} attributes b {{}} \
         attribute c {{ args {{ n: number }} }} function d {{}} api = [Thing]; }}"
    ));
    let Parsed { decl, errors } = &file.decls[0];
    let names: Vec<&str> = decl.macros.iter().map(|m| m.name.value.as_str()).collect();
    // `a` survives (its trailing comma is fine), `c` is lost, `d` and `api` are kept.
    assert_eq!(names, ["a", "d"]);
    assert_eq!(decl.api[0].value, "Thing");
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].contains("unknown entry `attributes` (did you mean `attribute`?)"));
    assert!(messages[1].contains("unknown value kind `number`"));
}

#[test]
fn semantic_errors() {
    let cases = [
        (
            "attribute a {} attribute a {}",
            "macro `a` is declared twice",
        ),
        (
            "function f { helpers = [x]; }",
            "a function-like macro has no helper attributes",
        ),
        (
            "derive D { args { x: str } }",
            "a derive macro takes no arguments",
        ),
        (
            "attribute a { args { x: str, _: expr } }",
            "the positional argument `_` must come first",
        ),
        (
            "attribute a { args { x: str, x: int } }",
            "argument `x` is declared twice",
        ),
        (
            "attribute a { args { m: \"a\" | \"b\" = \"c\" } }",
            "default \"c\" is not a value of kind",
        ),
        (
            "attribute a { args { n: int = \"x\" } }",
            "default \"x\" is not a value of kind `int`",
        ),
        (
            "attribute a { helpers = [k, k]; }",
            "helper `k` is listed twice",
        ),
        (
            "attribute a { colour = 1 }",
            "unknown key `colour` in a macro entry",
        ),
        ("api = [a, a];", "`a` is listed twice in `api`"),
        ("api = [::std::vec::Vec];", "write `std::vec::Vec`"),
        (
            "api = [self::Db];",
            "`self` has no meaning in `self::Db`: write `Db`",
        ),
        ("api = [super::Db];", "`super` has no meaning"),
        ("api = [crate];", "not the crate itself"),
        ("cell = \"d\";", "`cell` is declared twice"),
        (
            "/// doc\napi = [a];",
            "attributes and docs are only allowed on macro entries",
        ),
    ];
    for (body, expected) in cases {
        let errors = errors_of(&format!("{HEAD} {body}"));
        assert_eq!(errors.len(), 1, "{body}: {errors:?}");
        assert!(errors[0].1.contains(expected), "{body}: {:?}", errors[0].1);
    }
}

#[test]
fn api_paths_may_start_at_crate() {
    let file = parse_file(&format!(
        "export! {{ {HEAD} api = [crate::db::Db, Error]; }}"
    ));
    let Parsed { decl, errors } = &file.decls[0];
    assert!(errors.is_empty(), "{errors:?}");
    let api: Vec<&str> = decl.api.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(api, ["crate::db::Db", "Error"]);
}

#[test]
fn scanning_finds_only_export_invocations() {
    let source = format!(
        "mod inner {{ cell_sdk::export! {{ {HEAD} }} }}\n\
         other::export! {{ nonsense }}\n\
         macro_rules! export {{ () => {{}} }}\n\
         fn f() {{ let export = 1; }}"
    );
    let file = parse_file(&source);
    assert_eq!(file.decls.len(), 1);
    assert!(file.decls[0].errors.is_empty());
    assert!(file.lex_error.is_none());
}

#[test]
fn a_file_that_does_not_lex_is_reported_once() {
    let file = parse_file("cell_sdk::export! { format = 1; ");
    assert!(file.decls.is_empty());
    let err = file.lex_error.unwrap();
    assert!(err.message.starts_with("the file does not tokenize"));
}

#[test]
fn token_parsing_keeps_proc_macro_spans() {
    let tokens: proc_macro2::TokenStream = "format = 1; cell = \"c\"; macros = m; function q {}"
        .parse()
        .unwrap();
    let parsed = parse_tokens(tokens);
    assert!(parsed.errors.is_empty());
    let located = parsed.decl.map_spans(&mut Location::from_span);
    assert_eq!(located.macros[0].name.span.start.column, 45);
}

#[test]
fn garbage_never_panics() {
    for text in [
        "export!{}",
        "export!{;;;}",
        "export!{format = 99999999999999999999;}",
        "export!{attribute}",
        "export!{attribute a}",
        "export!{attribute a {args{_}}}",
        "export!{attribute a {args{x:}}}",
        "export!{attribute a {args{x: str = 1.5}}}",
        "export!{api = [}",
        "export!{api = []}",
        "export!{#[doc] attribute x {}}",
        "export!(format = 1)",
    ] {
        let _ = parse_file(text);
    }
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Fragments of the grammar, so random sequences get deep into the parser.
    const PIECES: &[&str] = &[
        "format",
        "cell",
        "macros",
        "api",
        "attribute",
        "function",
        "derive",
        "helpers",
        "args",
        "=",
        ";",
        ",",
        ":",
        "?",
        "|",
        "_",
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        "\"s\"",
        "1",
        "99999999999",
        "str",
        "bool",
        "int",
        "expr",
        "x",
        "true",
        "#",
        "///d\n",
        "::",
        "-1",
        "1.5",
    ];

    proptest! {
        #[test]
        fn grammar_soup_never_panics(picks in prop::collection::vec(0..PIECES.len(), 0..40)) {
            let body: Vec<&str> = picks.iter().map(|&i| PIECES[i]).collect();
            let _ = parse_file(&format!("cell_sdk::export! {{ {} }}", body.join(" ")));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = parse_file(&text);
            let _ = parse_file(&format!("export! {{ {text} }}"));
        }
    }
}
