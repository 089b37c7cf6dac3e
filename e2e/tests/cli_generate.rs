//! `--generate man|complete-bash|complete-zsh|complete-fish` and the examples that end `--help`,
//! for each of the four real binaries: what they print, that `--generate` runs nothing (no
//! folder, no log), and that every example shown is a command line the program accepts.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testkit::process::{assert_success, describe_output, wait_exit, ChildGuard, Program};

const PROGRAMS: [Program; 4] = [
    Program::Announcer,
    Program::Listener,
    Program::ChunkServer,
    Program::Downloader,
];

/// A flag only this program has, as the man page spells it (roff escapes `-` as `\-`).
fn own_flag(program: Program) -> &'static str {
    match program {
        Program::Announcer => "\\-\\-username",
        Program::Listener => "\\-\\-max\\-entries\\-per\\-source",
        Program::ChunkServer => "\\-\\-share",
        Program::Downloader => "\\-\\-max\\-size",
    }
}

/// How long a program given `--generate` or `--help` may take: it prints and exits at once, so
/// this is only reached by one that starts running instead.
const LIMIT: Duration = Duration::from_secs(20);

/// Runs `program` with `args` in `cwd`, stdin closed (so the announcer cannot ask anything);
/// killed (by its handle) and a failure if it has not exited within [`LIMIT`].
fn run_in(cwd: &Path, program: Program, args: &[&str]) -> Output {
    let out = tempfile::tempdir().expect("temp dir");
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = ChildGuard(
        Command::new(program.path())
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create a file"))
            .stderr(File::create(&stderr).expect("create a file"))
            .spawn()
            .expect("start the program"),
    );
    let status = wait_exit(&mut child.0, LIMIT)
        .unwrap_or_else(|| panic!("{} {args:?} still runs after {LIMIT:?}", program.name()));
    Output {
        status,
        stdout: fs::read(stdout).expect("read stdout"),
        stderr: fs::read(stderr).expect("read stderr"),
    }
}

fn run(program: Program, args: &[&str]) -> Output {
    run_in(&std::env::temp_dir(), program, args)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 on stdout")
}

#[test]
fn man_page_is_roff_naming_the_program_and_its_flags() {
    for program in PROGRAMS {
        let name = program.name();
        let output = run(program, &["--generate", "man"]);
        assert_success(&output, &format!("{name} --generate man"));
        let page = stdout(&output);
        let first_macro = page
            .lines()
            .find(|l| l.starts_with(".TH") || l.starts_with(".SH"))
            .unwrap_or_default();
        assert!(
            first_macro.starts_with(&format!(".TH {name} 1 ")),
            "{name}: the page opens with .TH NAME 1, got {first_macro:?}\n{page}"
        );
        assert!(
            page.contains(".SH NAME\n"),
            "{name}: no NAME section\n{page}"
        );
        for flag in ["\\-\\-dir", "\\-\\-generate", own_flag(program)] {
            assert!(
                page.contains(flag),
                "{name}: {flag} not in the man page\n{page}"
            );
        }
        // The examples are kept line by line, the command first.
        let examples = page
            .split(".SH EXAMPLES\n.nf\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: no EXAMPLES section\n{page}"));
        let escaped = name.replace('-', "\\-");
        assert!(
            examples.starts_with(&format!("  {escaped} \\-\\-dir ")),
            "{name}: examples\n{examples}"
        );
        assert!(examples.contains("\n.fi\n"), "{name}: examples\n{examples}");
    }
}

#[test]
fn completion_scripts_name_the_program_for_each_shell() {
    for program in PROGRAMS {
        let name = program.name();
        for (kind, marker) in [
            ("complete-bash", format!(" -o default {name}\n")),
            ("complete-zsh", format!("#compdef {name}\n")),
            ("complete-fish", format!("complete -c {name} ")),
        ] {
            let output = run(program, &["--generate", kind]);
            assert_success(&output, &format!("{name} --generate {kind}"));
            let script = stdout(&output);
            assert!(
                script.contains(&marker) && script.contains("generate"),
                "{name} --generate {kind}: expected {marker:?} and the flags\n{script}"
            );
            assert!(
                output.stderr.is_empty(),
                "{name} {kind}: {}",
                describe_output(&output)
            );
        }
    }
}

#[test]
fn the_downloader_network_subcommands_are_in_its_man_page_and_completions() {
    let page = stdout(&run(Program::Downloader, &["--generate", "man"]));
    assert!(page.contains("downloader\\-network(1)"), "{page}");
    for kind in ["complete-bash", "complete-zsh", "complete-fish"] {
        let script = stdout(&run(Program::Downloader, &["--generate", kind]));
        for word in ["network", "new", "join", "leave", "status", "force"] {
            assert!(script.contains(word), "{kind}: no {word:?}\n{script}");
        }
    }
}

#[test]
fn an_unknown_kind_is_a_usage_error() {
    for program in PROGRAMS {
        let output = run(program, &["--generate", "complete-tcsh"]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{}",
            describe_output(&output)
        );
        assert!(output.stdout.is_empty(), "{}", describe_output(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("complete-tcsh") && stderr.contains("complete-fish"),
            "{}: the error names the value and the possible ones\n{stderr}",
            program.name()
        );
    }
}

#[test]
fn generating_runs_nothing_and_creates_nothing() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let missing = cwd.path().join("no-such-peer");
    let missing = missing.to_str().expect("UTF-8 temp path");
    for program in PROGRAMS {
        for kind in ["man", "complete-bash", "complete-zsh", "complete-fish"] {
            let output = run_in(cwd.path(), program, &["--dir", missing, "--generate", kind]);
            assert_success(&output, &format!("{} --generate {kind}", program.name()));
            assert!(!output.stdout.is_empty(), "{}", describe_output(&output));
        }
    }
    let left: Vec<_> = fs::read_dir(cwd.path())
        .expect("read the temp dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "--generate created {left:?}");
}

/// The examples at the end of `--help` (or `-h`): the command of each, without its comment.
fn examples(program: Program, help_flag: &str) -> Vec<String> {
    let name = program.name();
    let output = run(program, &[help_flag]);
    assert_success(&output, &format!("{name} {help_flag}"));
    let help = stdout(&output);
    let (_, section) = help
        .rsplit_once("\nExamples:\n")
        .unwrap_or_else(|| panic!("{name} {help_flag}: no Examples section at the end\n{help}"));
    let lines: Vec<&str> = section.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.iter().all(|l| l.starts_with("  ")),
        "{name} {help_flag}: the help goes on after the examples\n{section}"
    );
    let commands: Vec<String> = lines
        .iter()
        .map(|l| l.trim_start())
        .filter(|l| l.starts_with(&format!("{name} ")))
        .map(|l| l.split("   ").next().unwrap_or_default().trim().to_owned())
        .collect();
    assert!(
        (2..=3).contains(&commands.len()),
        "{name} {help_flag}: 2 or 3 examples expected\n{section}"
    );
    commands
}

#[test]
fn help_ends_with_examples_the_program_accepts() {
    let cwd = tempfile::tempdir().expect("temp dir");
    for program in PROGRAMS {
        let long = examples(program, "--help");
        assert_eq!(long, examples(program, "-h"), "{}", program.name());
        for example in long {
            // Checked with `--generate` before the other arguments: clap parses the whole line
            // (an unknown flag or a missing value is exit 2), and nothing runs.
            let words: Vec<&str> = example.split_whitespace().skip(1).collect();
            let mut args = vec!["--generate", "man"];
            args.extend(&words);
            let output = run_in(cwd.path(), program, &args);
            assert_success(&output, &format!("example {example:?}"));
        }
    }
    let left = fs::read_dir(cwd.path()).expect("read the temp dir").count();
    assert_eq!(left, 0, "checking the examples created files");
}
