/* SPDX-License-Identifier: MIT */
/*
 * libring's ABI stays what libring/libring.sym says, and stays documented (STYLE.md, ABI and
 * Man pages): libring.so exports exactly the map's symbols, ring.h declares each of them, and
 * each has a man page named after it, either a page of its own or a one-line .so alias of
 * one, whose text names the symbol. Alias pages are linted from a temporary man root, where
 * their ".so man3/x.3" resolves as it does once installed; test-spec lints the other pages.
 * Reads the source and build trees; writes nothing but that man root, which it removes.
 */
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "macro.h"
#include "test-util.h"

#define MAP_FILE "libring/libring.sym"
#define HEADER_FILE "libring/ring.h"
#define LIBRARY_FILE "libring/.libs/libring.so"

typedef struct StrList {
        char **v;
        size_t n;
} StrList;

static void strlist_add(StrList *l, const char *s) {
        char **grown = reallocarray(l->v, l->n + 1, sizeof(char *));

        ck_assert_ptr_nonnull(grown);
        l->v = grown;
        l->v[l->n] = strdup(s);
        ck_assert_ptr_nonnull(l->v[l->n]);
        l->n++;
}

static bool strlist_has(const StrList *l, const char *s) {
        for (size_t i = 0; i < l->n; i++)
                if (strcmp(l->v[i], s) == 0)
                        return true;
        return false;
}

static void strlist_done(StrList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        *l = (StrList) { 0 };
}

static const char *builddir(void) {
        return getenv("TOP_BUILDDIR") ?: "..";
}

/* The whole file as a NUL-terminated string, or NULL if it cannot be read. */
static char *read_file(const char *path) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, size = 0, n;
        FILE *f = fopen(path, "re");

        if (!f)
                return NULL;
        do {
                if (size - len < 4096) {
                        char *p = realloc(buf, size + 65536);

                        ck_assert_ptr_nonnull(p);
                        buf = p;
                        size += 65536;
                }
                n = fread(buf + len, 1, size - len - 1, f);
                len += n;
        } while (n > 0);
        if (ferror(f)) {
                fclose(f);
                return NULL;
        }
        fclose(f);
        buf[len] = 0;
        return TAKE_PTR(buf);
}

/* Appends s to cmd as one single-quoted shell word. */
static void append_quoted(char *cmd, size_t size, const char *s) {
        size_t n = strlen(cmd);

        ck_assert_uint_lt(n + 3, size);
        cmd[n++] = ' ';
        cmd[n++] = '\'';
        for (; *s; s++) {
                if (*s == '\'') {
                        ck_assert_uint_lt(n + 5, size);
                        memcpy(cmd + n, "'\\''", 4);
                        n += 4;
                } else {
                        ck_assert_uint_lt(n + 2, size);
                        cmd[n++] = *s;
                }
        }
        ck_assert_uint_lt(n + 2, size);
        cmd[n++] = '\'';
        cmd[n] = 0;
}

/* Runs cmd with sh; returns its output (stdout, and stderr if cmd redirects it) and its exit
 * status (-1 if it did not exit). */
static char *run(const char *cmd, int *ret_status) {
        _cleanup_free_ char *out = NULL;
        size_t len = 0, size = 0, n;
        FILE *p = popen(cmd, "r");
        int status;

        ck_assert_msg(p, "popen(%s) failed", cmd);
        do {
                if (size - len < 4096) {
                        char *g = realloc(out, size + 65536);

                        ck_assert_ptr_nonnull(g);
                        out = g;
                        size += 65536;
                }
                n = fread(out + len, 1, size - len - 1, p);
                len += n;
        } while (n > 0);
        out[len] = 0;
        status = pclose(p);
        *ret_status = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return TAKE_PTR(out);
}

/* ---- the version script ---- */

static bool is_ident_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.' || c == '*' || c == '?' || c == ':';
}

/* Reads libring.sym: node names into nodes, the global symbols of every node into globals.
 * Understands what the map uses (comments, "NODE {", "global:", "local:", "sym;",
 * "} PARENT;"); anything else, and wildcards among the globals, is an error, so that the map
 * stays an explicit list. */
static void parse_map(const char *text, StrList *globals, StrList *nodes) {
        enum { OUTSIDE, AFTER_NAME, INSIDE, AFTER_NODE } state = OUTSIDE;
        bool global = false;
        char word[256] = "";
        const char *p = text;

        while (*p) {
                if (p[0] == '/' && p[1] == '*') {
                        const char *end = strstr(p + 2, "*/");

                        ck_assert_msg(end, MAP_FILE ": unterminated comment");
                        p = end + 2;
                        continue;
                }
                if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
                        p++;
                        continue;
                }
                if (is_ident_char(*p)) {
                        size_t n = 0;

                        while (is_ident_char(p[n]))
                                n++;
                        ck_assert_msg(n < sizeof(word), MAP_FILE ": name too long");
                        memcpy(word, p, n);
                        word[n] = 0;
                        p += n;

                        if (state == OUTSIDE) {
                                strlist_add(nodes, word);
                                state = AFTER_NAME;
                        } else if (state == INSIDE && strcmp(word, "global:") == 0)
                                global = true;
                        else if (state == INSIDE && strcmp(word, "local:") == 0)
                                global = false;
                        else if (state == INSIDE && global) {
                                ck_assert_msg(!strpbrk(word, "*?:"),
                                              MAP_FILE ": \"%s\": globals must be plain names", word);
                                strlist_add(globals, word);
                        } else if (state == INSIDE || state == AFTER_NODE) {
                                /* A local pattern, or the parent a node inherits from. */
                        } else
                                ck_abort_msg(MAP_FILE ": unexpected \"%s\"", word);
                        continue;
                }
                if (*p == '{') {
                        ck_assert_msg(state == AFTER_NAME, MAP_FILE ": '{' without a node name");
                        state = INSIDE;
                        /* As for ld: names before any "global:" or "local:" are global. */
                        global = true;
                } else if (*p == '}') {
                        ck_assert_msg(state == INSIDE, MAP_FILE ": unbalanced '}'");
                        state = AFTER_NODE;
                } else if (*p == ';') {
                        if (state == AFTER_NODE)
                                state = OUTSIDE;
                        else
                                ck_assert_msg(state == INSIDE, MAP_FILE ": unexpected ';'");
                } else
                        ck_abort_msg(MAP_FILE ": unexpected character '%c'", *p);
                p++;
        }
        ck_assert_msg(state == OUTSIDE, MAP_FILE ": ends inside a node");
        ck_assert_msg(nodes->n > 0 && globals->n > 0, MAP_FILE ": no version node or no globals");
}

static void load_map(StrList *globals, StrList *nodes) {
        _cleanup_free_ char *text = NULL;
        char path[PATH_MAX];

        test_srcdir_path(MAP_FILE, path, sizeof(path));
        text = read_file(path);
        ck_assert_msg(text, "cannot read %s", path);
        parse_map(text, globals, nodes);
}

/* ---- man pages ---- */

typedef struct Page {
        char *path;
        char *name;     /* file name, "ring_conn_open.3" */
        char *so;       /* an alias page's target, "man3/ring_conn_open.3"; NULL for a real page */
} Page;

typedef struct Pages {
        Page *v;
        size_t n;
} Pages;

static void pages_done(Pages *pages) {
        for (size_t i = 0; i < pages->n; i++) {
                free(pages->v[i].path);
                free(pages->v[i].name);
                free(pages->v[i].so);
        }
        free(pages->v);
        *pages = (Pages) { 0 };
}

static const Page *pages_find(const Pages *pages, const char *name) {
        for (size_t i = 0; i < pages->n; i++)
                if (strcmp(pages->v[i].name, name) == 0)
                        return &pages->v[i];
        return NULL;
}

/* The target of a page that is exactly one ".so TARGET" line, or NULL. */
static char *so_target(const char *text) {
        const char *nl;

        if (strncmp(text, ".so ", 4) != 0)
                return NULL;
        nl = strchr(text, '\n');
        if (!nl || nl[1] != 0 || nl == text + 4)
                return NULL;
        return strndup(text + 4, (size_t) (nl - text - 4));
}

static void pages_add(Pages *pages, const char *path) {
        _cleanup_free_ char *text = NULL;
        const char *slash = strrchr(path, '/');
        const char *name = slash ? slash + 1 : path;
        Page *grown;

        if (pages_find(pages, name))
                return;         /* the build tree's copy came first */
        text = read_file(path);
        ck_assert_msg(text, "cannot read man page %s", path);
        grown = reallocarray(pages->v, pages->n + 1, sizeof(Page));
        ck_assert_ptr_nonnull(grown);
        pages->v = grown;
        pages->v[pages->n] = (Page) { .path = strdup(path), .name = strdup(name), .so = so_target(text) };
        ck_assert(pages->v[pages->n].path && pages->v[pages->n].name);
        pages->n++;
}

static void pages_add_list(Pages *pages, const char *list) {
        _cleanup_free_ char *copy = strdup(list);

        ck_assert_ptr_nonnull(copy);
        for (char *save = NULL, *p = strtok_r(copy, " \t\n", &save); p; p = strtok_r(NULL, " \t\n", &save))
                pages_add(pages, p);
}

static void pages_add_glob(Pages *pages, const char *top) {
        char pattern[PATH_MAX];
        glob_t g = { 0 };

        snprintf(pattern, sizeof(pattern), "%s/man/*.[0-9]", top);
        if (glob(pattern, 0, NULL, &g) == 0)
                for (size_t i = 0; i < g.gl_pathc; i++)
                        pages_add(pages, g.gl_pathv[i]);
        globfree(&g);
}

/* The pages make ships: MAN_PAGES (built from scdoc) and MAN_ALIASES (.so pages), as
 * Makefile.am passes them. Run by hand, the pages in the build tree, then the source tree. */
static void load_pages(Pages *pages) {
        const char *built = getenv("MAN_PAGES"), *aliases = getenv("MAN_ALIASES");

        if ((built && *built) || (aliases && *aliases)) {
                pages_add_list(pages, built ?: "");
                pages_add_list(pages, aliases ?: "");
        } else {
                pages_add_glob(pages, builddir());
                pages_add_glob(pages, getenv("TOP_SRCDIR") ?: "..");
        }
        ck_assert_msg(pages->n > 0, "no man pages found: MAN_PAGES and MAN_ALIASES are empty and "
                      "neither tree has man/*.[0-9]");
}

/* The section of a page name: "3" for "ring_conn_open.3". */
static const char *page_section(const char *name) {
        const char *dot = strrchr(name, '.');
        return dot ? dot + 1 : "";
}

/* The page an alias points to, if its target is "man<S>/<page>" for a real page <page> of
 * section <S> among the pages; NULL otherwise. */
static const Page *alias_target(const Pages *pages, const Page *alias) {
        const char *slash = strchr(alias->so, '/');
        const Page *target;
        size_t dir_len;

        if (!slash || strncmp(alias->so, "man", 3) != 0)
                return NULL;
        target = pages_find(pages, slash + 1);
        if (!target || target->so)
                return NULL;
        dir_len = (size_t) (slash - alias->so);
        if (dir_len != 3 + strlen(page_section(target->name)) ||
            strncmp(alias->so + 3, page_section(target->name), dir_len - 3) != 0)
                return NULL;
        return target;
}

/* True if text has name( where name is a whole identifier: a declaration or definition. */
static bool declares(const char *text, const char *name) {
        size_t n = strlen(name);

        for (const char *p = strstr(text, name); p; p = strstr(p + 1, name))
                if ((p == text || !(isalnum((unsigned char) p[-1]) || p[-1] == '_')) && p[n] == '(')
                        return true;
        return false;
}

/* ---- tests ---- */

START_TEST(test_exports_match_map) {
        StrList globals = { 0 }, nodes = { 0 }, exported = { 0 };
        _cleanup_free_ char *out = NULL;
        char lib[PATH_MAX], cmd[PATH_MAX + 64] = "nm -D --defined-only";
        unsigned missing = 0, extra = 0;
        struct stat st;
        int status;

        load_map(&globals, &nodes);
        snprintf(lib, sizeof(lib), "%s/%s", builddir(), LIBRARY_FILE);
        ck_assert_msg(stat(lib, &st) == 0, "%s: %s (build the library first)", lib, strerror(errno));

        append_quoted(cmd, sizeof(cmd), lib);
        strcat(cmd, " 2>&1");
        out = run(cmd, &status);
        ck_assert_msg(status == 0, "%s exited with %d%s: %s", cmd, status,
                      status == 127 ? " (is nm installed?)" : "", out);

        for (char *save = NULL, *line = strtok_r(out, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
                char type, name[256];

                /* "0000000000004a10 T ring_version@@LIBRING_0.1", "... A LIBRING_0.1" */
                ck_assert_msg(sscanf(line, "%*s %c %255s", &type, name) == 2, "cannot parse nm line \"%s\"",
                              line);
                name[strcspn(name, "@")] = 0;
                if (type == 'A' || strlist_has(&nodes, name))
                        continue;       /* a version node, not a symbol */
                if (!strlist_has(&exported, name))
                        strlist_add(&exported, name);
        }

        /* Report every difference before failing, as TAP comments. */
        for (size_t i = 0; i < globals.n; i++)
                if (!strlist_has(&exported, globals.v[i])) {
                        printf("# in " MAP_FILE " but not exported by libring.so: %s\n", globals.v[i]);
                        missing++;
                }
        for (size_t i = 0; i < exported.n; i++)
                if (!strlist_has(&globals, exported.v[i])) {
                        printf("# exported by libring.so but not in " MAP_FILE ": %s\n", exported.v[i]);
                        extra++;
                }
        ck_assert_msg(missing == 0 && extra == 0,
                      "libring.so and " MAP_FILE " differ: %u symbols not exported, %u exported but not in "
                      "the map (a definition lacks RING_EXPORT, or the map lacks a name)", missing, extra);
        strlist_done(&globals);
        strlist_done(&nodes);
        strlist_done(&exported);
}
END_TEST

START_TEST(test_header_declares_map) {
        StrList globals = { 0 }, nodes = { 0 };
        _cleanup_free_ char *header = NULL;
        char path[PATH_MAX];
        unsigned missing = 0;

        load_map(&globals, &nodes);
        test_srcdir_path(HEADER_FILE, path, sizeof(path));
        header = read_file(path);
        ck_assert_msg(header, "cannot read %s", path);

        for (size_t i = 0; i < globals.n; i++) {
                if (!declares(header, globals.v[i])) {
                        printf("# %s is in " MAP_FILE " but " HEADER_FILE " declares no %s()\n", globals.v[i],
                               globals.v[i]);
                        missing++;
                }
        }
        ck_assert_msg(missing == 0, "%u symbols of the map are not declared in " HEADER_FILE, missing);

        strlist_done(&globals);
        strlist_done(&nodes);
}
END_TEST

START_TEST(test_man_page_per_symbol) {
        StrList globals = { 0 }, nodes = { 0 };
        Pages pages = { 0 };
        unsigned failed = 0;

        load_map(&globals, &nodes);
        load_pages(&pages);

        /* Every alias, a symbol's or not, must point at a real page that make ships. */
        for (size_t i = 0; i < pages.n; i++)
                if (pages.v[i].so && !alias_target(&pages, &pages.v[i])) {
                        printf("# %s: \".so %s\" names no page of its section that make ships (aliases are "
                               "one line \".so man<S>/<page>.<S>\")\n", pages.v[i].path, pages.v[i].so);
                        failed++;
                }

        for (size_t i = 0; i < globals.n; i++) {
                _cleanup_free_ char *text = NULL;
                char name[300];
                const Page *page;

                snprintf(name, sizeof(name), "%s.3", globals.v[i]);
                page = pages_find(&pages, name);
                if (!page) {
                        printf("# %s has no man page: add man/%s.scd to MAN_SCD, or make man/%s an "
                               "alias of a page (MAN_ALIASES in Makefile.am)\n", globals.v[i], name, name);
                        failed++;
                        continue;
                }
                if (page->so) {
                        page = alias_target(&pages, page);
                        if (!page)
                                continue;       /* reported above */
                }
                text = read_file(page->path);
                ck_assert_msg(text, "cannot read %s", page->path);
                if (!strstr(text, globals.v[i])) {
                        printf("# %s: the page for %s never mentions it\n", page->path, globals.v[i]);
                        failed++;
                }
        }
        ck_assert_msg(failed == 0, "%u problems with the man pages of libring's symbols", failed);

        pages_done(&pages);
        strlist_done(&globals);
        strlist_done(&nodes);
}
END_TEST

START_TEST(test_alias_pages_lint) {
        StrList made = { 0 };
        Pages pages = { 0 };
        char root[PATH_MAX];
        unsigned n = 0, failed = 0;
        const char *tmp = getenv("TMPDIR");

        load_pages(&pages);
        snprintf(root, sizeof(root), "%s/ring-test-abi.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        ck_assert_msg(mkdtemp(root), "mkdtemp(%s): %s", root, strerror(errno));

        /* A man root as installed: man<S>/<page> for every page, so that ".so man3/x.3" resolves
         * relative to it, as mandoc and man(1) resolve it. Failures are collected, not asserted,
         * until the root is gone again. */
        for (size_t i = 0; i < pages.n; i++) {
                char dir[PATH_MAX + 16], link[2 * PATH_MAX];

                snprintf(dir, sizeof(dir), "%s/man%s", root, page_section(pages.v[i].name));
                if (!strlist_has(&made, dir)) {
                        if (mkdir(dir, 0700) < 0) {
                                printf("# mkdir %s: %s\n", dir, strerror(errno));
                                failed++;
                                continue;
                        }
                        strlist_add(&made, dir);
                }
                snprintf(link, sizeof(link), "%s/%s", dir, pages.v[i].name);
                if (symlink(pages.v[i].path, link) < 0) {
                        printf("# symlink %s: %s\n", link, strerror(errno));
                        failed++;
                        continue;
                }
                strlist_add(&made, link);
        }

        for (size_t i = 0; i < pages.n && failed == 0; i++) {
                _cleanup_free_ char *out = NULL;
                char cmd[3 * PATH_MAX] = "cd", rel[PATH_MAX];
                int status;

                if (!pages.v[i].so)
                        continue;
                snprintf(rel, sizeof(rel), "man%s/%s", page_section(pages.v[i].name), pages.v[i].name);
                append_quoted(cmd, sizeof(cmd), root);
                strcat(cmd, " && mandoc -T lint -W error");
                append_quoted(cmd, sizeof(cmd), rel);
                strcat(cmd, " 2>&1");
                out = run(cmd, &status);
                n++;
                if (status != 0) {
                        printf("# %s: mandoc exited with %d%s\n", pages.v[i].path, status,
                               status == 127 ? " (is mandoc installed?)" : "");
                        for (char *save = NULL, *line = strtok_r(out, "\n", &save); line;
                             line = strtok_r(NULL, "\n", &save))
                                printf("#   %s\n", line);
                        failed++;
                }
        }

        /* Links first, then the directories, then the root. */
        for (size_t i = made.n; i > 0; i--)
                if (remove(made.v[i - 1]) < 0)
                        printf("# cannot remove %s: %s\n", made.v[i - 1], strerror(errno));
        if (rmdir(root) < 0)
                printf("# cannot remove %s: %s\n", root, strerror(errno));

        ck_assert_msg(failed == 0, "%u alias pages fail mandoc -T lint -W error (of %u)", failed, n);
        ck_assert_msg(n > 0, "no alias pages: every function of ring.h sharing a page has one");

        strlist_done(&made);
        pages_done(&pages);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("abi");
        TCase *tc = tcase_create("abi");

        tcase_add_test(tc, test_exports_match_map);
        tcase_add_test(tc, test_header_declares_map);
        tcase_add_test(tc, test_man_page_per_symbol);
        tcase_add_test(tc, test_alias_pages_lint);
        suite_add_tcase(s, tc);
        return s;
}
