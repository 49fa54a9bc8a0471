/**
 * xl's domain configuration syntax (xl.cfg(5)), read as Xen 4.17's libxlutil reads it
 * (tools/libs/util: the flex scanner libxlu_cfg_l.l, the bison grammar libxlu_cfg_y.y, the
 * setting store and getters of libxlu_cfg.c). `test/cli/xl-cfg.test.ts` holds it to the real
 * libxlutil when the machine has it.
 *
 *   name = "guest"          # a string: "…" or '…', with C escapes
 *   memory = 128; vcpus = 2 # a number is kept as its text; `;` or a newline ends a statement
 *   disk = [ "a.img,raw,xvda,rw",
 *            "b.img,,xvdb",          # a list goes on over lines; a trailing `,` is fine
 *          ]
 *   extra += " quiet"       # `+=` appends to the setting before it (strings or lists)
 *
 * The scanner: `[a-z][._0-9a-z]*` is a name, `[0-9][0-9a-fx]*` a number, `#` to the end of the
 * line a newline. Any other character starts a lexical error that takes the rest of its word
 * (`1.5` reads `1`, then ".5: lexical error") and hands the parser nothing, so the statement
 * may still parse; `+ - . ( ) :` also flag the file as likely Python (xl's three warning lines).
 *
 * The parser is the grammar's LALR automaton written out by state; where bison reduces by
 * default before it finds the error, the "expecting" list is the one of the state it lands in,
 * which is why `x = 1 2` expects only `$end` and `[ "a" "b" ]` only `']'`. After a syntax error
 * bison discards tokens to the next newline and stays quiet until three tokens have been shifted;
 * a message on a line at or before the last lexical error's is dropped. An error right after a
 * whole assignment (`x = 1 2`) ends the parse: bison has reduced the file by then. The message names the
 * line and the text of the token it stopped at, as xlu__cfg_yyerror prints it:
 *
 *   guest.cfg:3: config parsing error near `y': syntax error, unexpected IDENT, expecting += or '='
 *   guest.cfg:0: config parsing error near <newline>: syntax error, unexpected NEWLINE, expecting …
 *
 * (the second is libxlutil's own: a newline's line is counted twice down). The file is read as
 * bytes (latin1), as flex reads it; values are decoded as UTF-8 at the end.
 */

/** One token; `text` is what the scanner matched (yytext), `line` its yylloc first_line. */
type TokenKind =
  | "IDENT"
  | "STRING"
  | "NUMBER"
  | "NEWLINE"
  | "+="
  | "'='"
  | "';'"
  | "'['"
  | "']'"
  | "','"
  | "$end";

interface Token {
  readonly kind: TokenKind;
  readonly text: string;
  readonly line: number;
  /** The atom's value (a string dequoted, a number's text). */
  readonly value?: string;
}

export type XlValue = string | (XlValue | null)[];

/** One setting as libxlu stores it: the value, `+=` or `=`, the line of the value. */
export interface XlSetting {
  readonly name: string;
  readonly value: XlValue;
  readonly addition: boolean;
  readonly line: number;
}

/** A config xl refuses: `messages` are libxlu's lines (and its Python warning), in order. */
export class XlConfigError extends Error {
  readonly messages: readonly string[];
  constructor(messages: readonly string[]) {
    super(messages.join("\n"));
    this.name = "XlConfigError";
    this.messages = messages;
  }
}

const PYTHON_WARNING = [
  "warning: Config file looks like it contains Python code.",
  "warning:  Arbitrary Python is no longer supported.",
  "warning:  See https://wiki.xen.org/wiki/PythonInXlConfig",
];

/** The scanner and its error state (CfgParseContext's lexerrlineno, likely_python, err). */
class Scanner {
  readonly #src: string;
  readonly #report: (line: number, text: string, msg: string) => void;
  #pos = 0;
  /** yylineno: the line the scanner is on. */
  line = 1;
  lexErrLine = -1;
  /** yytext at the end of the file: a lone bad last character, else flex's NUL. */
  tail = "\0";
  likelyPython = false;
  failed = false;

  constructor(src: string, report: (line: number, text: string, msg: string) => void) {
    this.#src = src;
    this.#report = report;
  }

  /** A lexical error (xlu__cfgl_lexicalerror): reported at the scanner's line, then remembered. */
  lexicalError(text: string, msg: string): void {
    if (this.line > this.lexErrLine) this.#report(this.line, text, msg);
    this.lexErrLine = this.line;
    this.failed = true;
  }

  next(): Token {
    const s = this.#src;
    for (;;) {
      if (this.#pos >= s.length) return { kind: "$end", text: "", line: -1 };
      const rest = s.slice(this.#pos);
      const c = rest[0]!;
      const at = (re: RegExp): RegExpExecArray | null => re.exec(rest);
      if (c === " " || c === "\t") {
        this.#pos++;
        continue;
      }
      const take = (kind: TokenKind, text: string, value?: string): Token => {
        this.#pos += text.length;
        return { kind, text, line: this.line, ...(value === undefined ? {} : { value }) };
      };
      const ident = at(/^[a-z][._0-9a-z]*/);
      if (ident) return take("IDENT", ident[0]);
      const num = at(/^[0-9][0-9a-fx]*/);
      if (num) return take("NUMBER", num[0], num[0]);
      if (rest.startsWith("+=")) return take("+=", "+=");
      const single: Record<string, TokenKind> = {
        ",": "','",
        "[": "'['",
        "]": "']'",
        "=": "'='",
        ";": "';'",
      };
      if (single[c] !== undefined) return take(single[c], c);
      const nl = at(/^(?:\n|#[^\n]*\n)/);
      if (nl) {
        this.#pos += nl[0].length;
        this.line++;
        // The rule sets first_line to the line the newline ends.
        return { kind: "NEWLINE", text: nl[0], line: this.line - 1 };
      }
      const str = at(/^(?:'(?:[^'\\\n]|\\[^\n])*'|"(?:[^"\\\n]|\\[^\n])*")/);
      if (str) {
        this.#pos += str[0].length;
        return { kind: "STRING", text: str[0], line: this.line, value: this.#dequote(str[0]) };
      }
      // Any other character: the lexerr state takes it with the rest of its word, or with one
      // blank after it, or with the newline (which still ends the statement).
      if ("+-.():".includes(c)) this.likelyPython = true;
      const after = rest.slice(1);
      if (after.length === 0) {
        // flex ends in the lexerr state without a match: no message, and yytext keeps the
        // character for whatever the parser says at the end of the file.
        this.#pos = s.length;
        this.tail = c;
        continue;
      }
      if (after[0] === "\n") {
        this.#pos += 2;
        this.line++;
        this.lexicalError(`${c}\n`, "lexical error");
        return { kind: "NEWLINE", text: `${c}\n`, line: this.line - 1 };
      }
      const word = /^[^ \t\n]*/.exec(after)![0];
      const len = word.length > 0 ? word.length : 1;
      this.#pos += 1 + len;
      this.lexicalError(c + after.slice(0, len), "lexical error");
    }
  }

  /** xlu__cfgl_dequote, its escapes as libxlutil has them (`\x` always refused, `\NNN` dropped). */
  #dequote(quoted: string): string {
    let out = "";
    // After any error libxlutil dequotes nothing more (and so reports nothing more here).
    if (this.failed) return out;
    const body = quoted.slice(1, -1);
    for (let i = 0; i < body.length; ) {
      const c = body[i++]!;
      if (c !== "\\") {
        out += c;
        continue;
      }
      const nc = body[i++]!;
      const simple: Record<string, string> = {
        '"': '"',
        "'": "'",
        "\\": "\\",
        a: "\x07",
        b: "\b",
        f: "\f",
        n: "\n",
        r: "\r",
        t: "\t",
        v: "\v",
      };
      if (simple[nc] !== undefined) {
        out += simple[nc];
      } else if (nc === "x") {
        // NUMERIC_CHAR(2,2,16) asks for more than the two digits it reads: never satisfied.
        this.lexicalError(
          quoted,
          "invalid digit after backslash hexnumerical character escape in quoted string",
        );
        return out;
      } else if (nc >= "0" && nc <= "7") {
        // NUMERIC_CHAR(1,3,10) reads up to three decimal digits after the first, keeps nothing.
        const digits = /^[0-9]*/.exec(body.slice(i, i + 3))![0];
        if (digits.length <= 1) {
          this.lexicalError(
            quoted,
            "invalid digit after backslash octalnumerical character escape in quoted string",
          );
          return out;
        }
        i += digits.length;
      } else {
        this.lexicalError(quoted, "invalid character after backlash in quoted string");
        return out;
      }
    }
    return out;
  }
}

/** The settings of one config, with libxlu's getters and their warnings. */
export class XlConfig {
  /** Newest first, as libxlu keeps them (a later setting of a name hides an earlier one). */
  readonly settings: readonly XlSetting[];
  readonly source: string;
  /** The getters' warnings, as libxlu prints them (xl goes on without the setting). */
  readonly warnings: string[] = [];

  constructor(source: string, settings: readonly XlSetting[]) {
    this.source = source;
    this.settings = settings;
  }

  find(name: string): XlSetting | undefined {
    return this.settings.find((s) => s.name === name);
  }

  #atom(name: string): XlSetting | undefined {
    const s = this.find(name);
    if (s === undefined) return undefined;
    if (typeof s.value !== "string") {
      this.warnings.push(
        `${this.source}:${s.line}: warning: parameter \`${name}' is a list but should be a single value`,
      );
      return undefined;
    }
    return s;
  }

  /** xlu_cfg_get_string: undefined when absent or a list (with libxlu's warning). */
  string(name: string): string | undefined {
    return this.#atom(name)?.value as string | undefined;
  }

  /** xlu_cfg_get_long: strtol(…, 0) of the whole value; undefined (and a warning) otherwise. */
  long(name: string): number | undefined {
    const s = this.#atom(name);
    if (s === undefined) return undefined;
    const warn = (what: string): undefined => {
      this.warnings.push(`${this.source}:${s.line}: warning: ${what}`);
      return undefined;
    };
    if (s.addition) return warn(`can't use += with numbers for parameter \`${name}'`);
    const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s.value as string);
    if (m === null) return warn(`parameter \`${name}' is not a valid number`);
    const digits = m[2]!;
    const n = BigInt(/^0[0-7]+$/.test(digits) ? `0o${digits.slice(1)}` : digits) * (m[1] === "-" ? -1n : 1n);
    if (n > 2n ** 63n - 1n || n < -(2n ** 63n))
      return warn(`parameter \`${name}' could not be parsed as a number: Numerical result out of range`);
    return Number(n);
  }

  /** xlu_cfg_get_list with xlu_cfg_get_listitem: a list's items (null for a nested list). */
  list(name: string): (string | null)[] | undefined {
    const s = this.find(name);
    if (s === undefined) return undefined;
    if (typeof s.value === "string") {
      this.warnings.push(
        `${this.source}:${s.line}: warning: parameter \`${name}' is a single value but should be a list`,
      );
      return undefined;
    }
    return s.value.map((v) => (typeof v === "string" ? v : null));
  }
}

/** What the automaton is waiting for; each state's "expecting" is bison's for it. */
const EXPECTING = {
  stmt: "$end or IDENT or NEWLINE or ';'",
  op: "+= or '='",
  value: "STRING or NUMBER or '['",
  end: "$end",
  list: "']'",
} as const;

/**
 * Parses a config as xlu_cfg_readdata does. `source` names it in messages (xl: the file name
 * as given). Throws XlConfigError with libxlu's lines when libxlu would fail.
 */
export function parseXlConfig(data: string | Uint8Array, source: string): XlConfig {
  const src = typeof data === "string" ? data : Buffer.from(data).toString("latin1");
  const messages: string[] = [];
  const utf8 = (s: string): string => Buffer.from(s, "latin1").toString("utf8");
  const report = (line: number, text: string, msg: string): void => {
    let t = text;
    let l = line;
    let newline = "";
    if (t.endsWith("\n")) {
      t = t.slice(0, -1);
      l--;
      if (t === "") newline = "<newline>";
    }
    t = t.replace(/[ \t]+$/, "");
    // At the end of the file yytext is flex's NUL, printed as nothing between the quotes.
    const near = t === "\0" ? "`'" : t === "" ? newline : `\`${utf8(t)}'`;
    messages.push(`${source}:${l}: config parsing error near ${near}: ${msg}`);
  };
  const lex = new Scanner(src, report);
  const settings: XlSetting[] = [];
  /** The last token read: $end keeps the line of the token before it (yylloc is not set). */
  let last: Token = { kind: "$end", text: "", line: 1 };
  const read = (): Token => {
    const t = lex.next();
    last = t.kind === "$end" ? { kind: "$end", text: lex.tail, line: last.line } : t;
    return last;
  };

  // Error recovery (bison's yyerrstatus): errors stay quiet until three tokens are shifted.
  let quiet = 0;
  const syntaxError = (t: Token, expecting: string): void => {
    if (quiet === 0 && t.line > lex.lexErrLine) {
      report(t.line, t.text, `syntax error, unexpected ${t.kind}, expecting ${expecting}`);
    }
    lex.failed = true;
  };
  const shift = (): void => {
    if (quiet > 0) quiet--;
  };

  /** `IDENT (=|+=) value`, stored as xlu__cfg_set_store does. */
  const store = (name: string, addition: boolean, value: XlValue, line: number): void => {
    if (lex.failed) return; // xlu__cfg_set_store stores nothing after an error
    let v = value;
    if (addition) {
      const prev = settings.find((s) => s.name === name);
      if (prev !== undefined) {
        if (typeof prev.value === "string" && typeof v === "string") v = prev.value + v;
        else if (typeof prev.value !== "string" && typeof v !== "string") v = [...prev.value, ...v];
        else {
          lex.lexicalError(last.text, `can't add [list] to "string" or vice versa`);
          return;
        }
      }
    }
    settings.unshift({ name, value: v, addition, line });
  };

  /**
   * A value after `=`: an atom, or a list (nested lists allowed), every token of it shifted.
   * Returns the value and its line, or the token it failed at and what the state expected.
   */
  const value = (first: Token): { v: XlValue; line: number } | { error: Token; expecting: string } => {
    if (first.kind === "STRING" || first.kind === "NUMBER") {
      shift();
      return { v: first.value!, line: first.line };
    }
    if (first.kind !== "'['") return { error: first, expecting: EXPECTING.value };
    shift();
    const items: (XlValue | null)[] = [];
    let t = read();
    // After `[` or `,`: newlines, a value, or the end; after a value: newlines, `,` or the end.
    let afterValue = false;
    for (;;) {
      if (t.kind === "NEWLINE") {
        shift();
        t = read();
        continue;
      }
      if (t.kind === "']'") {
        shift();
        return { v: items, line: first.line };
      }
      if (afterValue && t.kind === "','") {
        shift();
        afterValue = false;
        t = read();
        continue;
      }
      if (!afterValue && (t.kind === "STRING" || t.kind === "NUMBER" || t.kind === "'['")) {
        const r = value(t);
        if ("error" in r) return r;
        items.push(r.v);
        afterValue = true;
        t = read();
        continue;
      }
      return { error: t, expecting: EXPECTING.list };
    }
  };

  let t = read();
  parse: for (;;) {
    // A statement's start.
    if (t.kind === "$end") break;
    if (t.kind === "NEWLINE" || t.kind === "';'") {
      shift();
      t = read();
      continue;
    }
    let err: { error: Token; expecting: string } | undefined;
    if (t.kind !== "IDENT") err = { error: t, expecting: EXPECTING.stmt };
    else {
      const name = t.text;
      shift();
      const op = read();
      if (op.kind !== "'='" && op.kind !== "+=") err = { error: op, expecting: EXPECTING.op };
      else {
        shift();
        const r = value(read());
        if ("error" in r) err = r;
        else {
          store(name, op.kind === "+=", r.v, r.line);
          t = read();
          if (t.kind === "$end") break;
          if (t.kind === "NEWLINE" || t.kind === "';'") {
            shift();
            t = read();
            continue;
          }
          err = { error: t, expecting: EXPECTING.end };
        }
      }
    }
    // `error NEWLINE`: report, then drop tokens to the end of the line (the end of the file
    // there stops the parse).
    syntaxError(err.error, err.expecting);
    // An error after a whole assignment is found only once bison has reduced the file (the
    // state's default reduction): no state on the stack can shift `error`, so the parse ends.
    if (err.expecting === EXPECTING.end) break;
    quiet = 3;
    t = err.error;
    while (t.kind !== "NEWLINE") {
      if (t.kind === "$end") break parse;
      t = read();
    }
    shift();
    t = read();
  }
  if (lex.failed) {
    throw new XlConfigError(lex.likelyPython ? [...messages, ...PYTHON_WARNING] : messages);
  }
  const decode = (v: XlValue | null): XlValue | null =>
    v === null ? null : typeof v === "string" ? utf8(v) : v.map(decode);
  return new XlConfig(
    source,
    settings.map((s) => ({ ...s, value: decode(s.value) as XlValue })),
  );
}
