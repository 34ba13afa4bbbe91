package org.edgedeeplab.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class JsonTest {
    @Test
    fun parsesNestedValues() {
        val v = Json.parse(""" {"a": [1, -2.5e2, 0.125, true, false, null], "b": {"c": "d"}, "e": []} """)
        val m = v as Map<*, *>
        assertEquals(listOf(1.0, -250.0, 0.125, true, false, null), m["a"])
        assertEquals(mapOf("c" to "d"), m["b"])
        assertEquals(emptyList<Any?>(), m["e"])
        assertEquals(listOf("a", "b", "e"), m.keys.toList()) // file order kept
    }

    @Test
    fun decodesStringEscapes() {
        val s = Json.parse(""""q\"b\\s\/n\nt\tu\u00e9\u263A"""")
        assertEquals("q\"b\\s/n\nt\tu\u00e9\u263A", s)
    }

    @Test
    fun readsWhatPythonJsonDumpsWrites() {
        // json.dumps([1e-05, 0.0078125, 128, "person"]) in Python
        assertEquals(listOf(1e-05, 0.0078125, 128.0, "person"), Json.parse("[1e-05, 0.0078125, 128, \"person\"]"))
    }

    @Test
    fun rejectsMalformedText() {
        val bad = listOf("", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "01", "1.", "-", "tru", "\"abc", "[1] 2",
            "{a:1}", "\"\\x\"", "NaN", "\"a\nb\"")
        for (text in bad) {
            try {
                val v = Json.parse(text)
                fail("accepted ${text} as $v")
            } catch (e: JsonException) {
                assertTrue(e.message!!.contains("offset"))
            }
        }
    }

    @Test
    fun nullIsAValue() {
        assertNull(Json.parse(" null "))
    }
}
