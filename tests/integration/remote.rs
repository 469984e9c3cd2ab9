//! `cell_remote!` inside this test binary (whose manifest depends on `validate`, `greet`,
//! `shout`), and its compile errors (trybuild UI tests in `tests/ui/remote/`, one file per
//! problem, each `.stderr` carrying the problem code users see).

use cell_sdk::cell_remote;

cell_remote!(G = "greet");
cell_remote!(S = "shout");
cell_remote!(Val = "validate@0.2");

/// Two providers' `hello` (same macro name) on one struct, apart by alias.
#[G::hello]
#[S::hello]
struct Both;

#[test]
fn aliases_reach_each_providers_macro() {
    assert_eq!(Both::greet(), "hello Both, from greet 0.4");
    assert_eq!(Both::shout(), "HELLO BOTH, FROM SHOUT");
}

#[test]
fn aliases_reach_the_declared_api() {
    assert_eq!(G::VERSION, "0.4.2");
    assert_eq!(G::greeting("x"), "hello x, from greet 0.4");
    assert_eq!(S::greeting("x"), "HELLO X, FROM SHOUT");
    assert!(Val::is_email("a@b.co"));
}

mod nested {
    // An alias in a nested module works the same; `pub(crate)` re-export it like any module.
    cell_sdk::cell_remote!(Greeter = "greet@0.4");

    #[Greeter::hello]
    pub(crate) struct Inner;
}

#[test]
fn aliases_work_in_nested_modules_and_function_bodies() {
    assert_eq!(nested::Inner::greet(), "hello Inner, from greet 0.4");
    assert_eq!(nested::Greeter::VERSION, "0.4.2");

    cell_remote!(Local = "shout");
    #[Local::hello]
    struct InFn;
    assert_eq!(InFn::shout(), "HELLO INFN, FROM SHOUT");
}

#[test]
fn the_alias_carries_the_export_format() {
    assert_eq!(G::__CELL_EXPORT_FORMAT, cell_export::SUPPORTED_FORMAT);
}

#[test]
fn compile_errors_carry_problem_codes_at_the_users_tokens() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/remote/*.rs");
}
