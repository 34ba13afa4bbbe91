package org.edgedeeplab.core

/** A JSON syntax error, with the character offset where it was found. */
class JsonException(message: String) : Exception(message)

/**
 * A small strict JSON reader (RFC 8259) for the model card.
 *
 * Plain Kotlin because org.json exists only on Android and the card is parsed by the same code in JVM
 * unit tests. Objects become [Map] (keys in file order), arrays [List], numbers [Double], plus
 * [String], [Boolean] and null.
 */
object Json {
    fun parse(text: String): Any? {
        val reader = Reader(text)
        reader.skipSpace()
        val value = reader.value()
        reader.skipSpace()
        if (!reader.atEnd()) reader.fail("unexpected text after the JSON value")
        return value
    }

    private class Reader(private val s: String) {
        private var i = 0

        fun atEnd() = i >= s.length

        fun fail(what: String): Nothing = throw JsonException("$what at offset $i")

        fun skipSpace() {
            while (i < s.length && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++
        }

        fun value(): Any? {
            if (atEnd()) fail("unexpected end of text")
            return when (s[i]) {
                '{' -> obj()
                '[' -> array()
                '"' -> string()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> number()
            }
        }

        private fun literal(word: String, value: Any?): Any? {
            if (!s.startsWith(word, i)) fail("invalid value")
            i += word.length
            return value
        }

        private fun expect(c: Char) {
            skipSpace()
            if (atEnd() || s[i] != c) fail("expected '$c'")
            i++
        }

        private fun obj(): Map<String, Any?> {
            val map = LinkedHashMap<String, Any?>()
            i++ // '{'
            skipSpace()
            if (!atEnd() && s[i] == '}') {
                i++
                return map
            }
            while (true) {
                skipSpace()
                if (atEnd() || s[i] != '"') fail("expected a string key")
                val key = string()
                expect(':')
                skipSpace()
                map[key] = value()
                skipSpace()
                if (atEnd()) fail("unterminated object")
                val c = s[i]
                if (c == '}') {
                    i++
                    return map
                }
                if (c != ',') fail("expected ',' or '}'")
                i++
            }
        }

        private fun array(): List<Any?> {
            val list = ArrayList<Any?>()
            i++ // '['
            skipSpace()
            if (!atEnd() && s[i] == ']') {
                i++
                return list
            }
            while (true) {
                skipSpace()
                list.add(value())
                skipSpace()
                if (atEnd()) fail("unterminated array")
                val c = s[i]
                if (c == ']') {
                    i++
                    return list
                }
                if (c != ',') fail("expected ',' or ']'")
                i++
            }
        }

        private fun string(): String {
            i++ // opening quote
            val out = StringBuilder()
            while (true) {
                if (atEnd()) fail("unterminated string")
                val c = s[i++]
                when {
                    c == '"' -> return out.toString()
                    c == '\\' -> {
                        if (atEnd()) fail("unterminated escape")
                        when (val e = s[i++]) {
                            '"', '\\', '/' -> out.append(e)
                            'b' -> out.append('\b')
                            'f' -> out.append('\u000C')
                            'n' -> out.append('\n')
                            'r' -> out.append('\r')
                            't' -> out.append('\t')
                            'u' -> {
                                if (i + 4 > s.length) fail("short \\u escape")
                                val code = s.substring(i, i + 4).toIntOrNull(16) ?: fail("bad \\u escape")
                                out.append(code.toChar())
                                i += 4
                            }
                            else -> fail("bad escape '\\$e'")
                        }
                    }
                    c < ' ' -> fail("control character in string")
                    else -> out.append(c)
                }
            }
        }

        private fun number(): Double {
            val start = i
            if (i < s.length && s[i] == '-') i++
            if (i < s.length && s[i] == '0') {
                i++
            } else {
                if (!digits()) fail("invalid value")
            }
            if (i < s.length && s[i] == '.') {
                i++
                if (!digits()) fail("digits expected after '.'")
            }
            if (i < s.length && (s[i] == 'e' || s[i] == 'E')) {
                i++
                if (i < s.length && (s[i] == '+' || s[i] == '-')) i++
                if (!digits()) fail("digits expected in exponent")
            }
            return s.substring(start, i).toDouble()
        }

        private fun digits(): Boolean {
            val start = i
            while (i < s.length && s[i] in '0'..'9') i++
            return i > start
        }
    }
}
