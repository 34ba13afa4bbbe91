package org.edgedeeplab.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.util.Random

class MaskDecoderTest {
    private fun bruteArgmax(values: DoubleArray, classes: Int): IntArray = IntArray(values.size / classes) { p ->
        var best = 0
        for (k in 1 until classes) if (values[p * classes + k] > values[p * classes + best]) best = k
        best
    }

    @Test
    fun floatArgmaxPicksTheFirstLargest() {
        val logits = floatArrayOf(0f, 3f, 3f, /**/ -1f, -2f, -0.5f, /**/ 7f, 7f, 7f)
        val mask = IntArray(3)
        MaskDecoder.argmax(logits, 3, mask)
        assertArrayEquals(intArrayOf(1, 2, 0), mask)
    }

    @Test
    fun floatArgmaxMatchesBruteForce() {
        val rnd = Random(11)
        val classes = 21
        val logits = FloatArray(50 * classes) { rnd.nextGaussian().toFloat() }
        val mask = IntArray(50)
        MaskDecoder.argmax(logits, classes, mask)
        assertArrayEquals(bruteArgmax(DoubleArray(logits.size) { logits[it].toDouble() }, classes), mask)
    }

    @Test
    fun uint8ArgmaxReadsBytesUnsigned() {
        // 200 is stored as the byte -56: read signed it would lose to 100
        val logits = byteArrayOf(100, 200.toByte(), 5)
        val mask = IntArray(1)
        MaskDecoder.argmax(logits, false, 3, mask)
        assertEquals(1, mask[0])
        MaskDecoder.argmax(logits, true, 3, mask) // as int8: 100 > -56
        assertEquals(0, mask[0])
    }

    @Test
    fun quantizedArgmaxEqualsArgmaxOfDequantizedValues() {
        val rnd = Random(5)
        val classes = 19
        for (signed in listOf(true, false)) {
            val zeroPoint = if (signed) -3 else 120
            val scale = 0.07
            val q = ByteArray(40 * classes) { rnd.nextInt(256).toByte() }
            val real = DoubleArray(q.size) {
                val stored = if (signed) q[it].toInt() else q[it].toInt() and 0xFF
                scale * (stored - zeroPoint)
            }
            val mask = IntArray(40)
            MaskDecoder.argmax(q, signed, classes, mask)
            assertArrayEquals(bruteArgmax(real, classes), mask)
        }
    }

    @Test
    fun decodesEveryOutputTypeTheCardAllows() {
        val size = 2
        val logits = card(cardJson(size = size, numClasses = 3))
        val out = OutputData.allocate(logits) as OutputData.Floats
        assertEquals(size * size * 3, out.values.size)
        floatArrayOf(0f, 1f, 0f, 2f, 0f, 0f, 0f, 0f, 5f, 1f, 1f, 9f).copyInto(out.values)
        val mask = IntArray(size * size)
        MaskDecoder(logits).decode(out, mask)
        assertArrayEquals(intArrayOf(1, 0, 2, 2), mask)

        val int8 = card(cardJson(size = size, numClasses = 3, outputType = "int8"))
        val bytes = OutputData.allocate(int8) as OutputData.Bytes
        assertTrue(bytes.signed)
        byteArrayOf(-5, -6, -7, 0, 1, -1, 3, 3, 4, 127, -128, 0).copyInto(bytes.values)
        MaskDecoder(int8).decode(bytes, mask)
        assertArrayEquals(intArrayOf(0, 1, 2, 0), mask)

        val labels = { type: String -> card(cardJson(size = size, kind = "labels", outputType = type)) }
        val longs = OutputData.allocate(labels("int64")) as OutputData.Longs
        longArrayOf(0, 15, 20, 3).copyInto(longs.values)
        MaskDecoder(labels("int64")).decode(longs, mask)
        assertArrayEquals(intArrayOf(0, 15, 20, 3), mask)

        val ints = OutputData.allocate(labels("int32")) as OutputData.Ints
        intArrayOf(7, 0, 1, 2).copyInto(ints.values)
        MaskDecoder(labels("int32")).decode(ints, mask)
        assertArrayEquals(intArrayOf(7, 0, 1, 2), mask)

        val u8 = OutputData.allocate(labels("uint8")) as OutputData.Bytes
        byteArrayOf(0, 1, 200.toByte(), 20).copyInto(u8.values)
        MaskDecoder(labels("uint8")).decode(u8, mask)
        assertArrayEquals(intArrayOf(0, 1, 200, 20), mask)
    }

    @Test(expected = IllegalArgumentException::class)
    fun rejectsOutputOfTheWrongSize() {
        val c = card(cardJson(size = 2, numClasses = 3))
        MaskDecoder(c).decode(OutputData.Floats(FloatArray(5)), IntArray(4))
    }
}
