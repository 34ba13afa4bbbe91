package org.edgedeeplab.core

import org.junit.Assert.assertEquals
import org.junit.Test

class InputEncoderTest {
    private fun argb(r: Int, g: Int, b: Int) = (0xFF shl 24) or (r shl 16) or (g shl 8) or b

    @Test
    fun normalizesFloatInputPerChannel() {
        val enc = InputEncoder(card(cardJson(mean = "[0, 100, 255]", std = "[255, 50, 1]")))
        assertEquals(1f, enc.floatValue(0, 255), 1e-6f)
        assertEquals(0f, enc.floatValue(0, 0), 1e-6f)
        assertEquals(-2f, enc.floatValue(1, 0), 1e-6f)
        assertEquals(-255f, enc.floatValue(2, 0), 1e-6f)
        val std = InputEncoder(card()) // x / 127.5 - 1
        assertEquals(-1f, std.floatValue(0, 0), 1e-6f)
        assertEquals(1f, std.floatValue(2, 255), 1e-6f)
    }

    @Test
    fun uint8InputOfOfficialQuantModelStoresThePixelItself() {
        // scale 1/128, zero point 128 and mean = std = 128: q = round((v - 128) / 128 * 128) + 128 = v
        val enc = InputEncoder(card(cardJson(inputType = "uint8", inputScale = 0.0078125, inputZeroPoint = 128,
            mean = "128", std = "128")))
        for (c in 0 until 3) for (v in 0 until 256) assertEquals(v, enc.byteValue(c, v).toInt() and 0xFF)
        assertEquals(128, enc.bytePad.toInt() and 0xFF)
    }

    @Test
    fun int8InputQuantizesAndClamps() {
        // real = v / 127.5 - 1 in [-1, 1]; scale 1/64 makes reals beyond 127/64 clamp at 127
        val enc = InputEncoder(card(cardJson(inputType = "int8", inputScale = 1.0 / 64, inputZeroPoint = -10)))
        assertEquals(-74, enc.byteValue(0, 0).toInt()) // -1 * 64 - 10
        assertEquals(54, enc.byteValue(0, 255).toInt()) // 1 * 64 - 10
        assertEquals(-10, enc.bytePad.toInt()) // a normalized 0 is the zero point
        val tight = InputEncoder(card(cardJson(inputType = "int8", inputScale = 1.0 / 200, inputZeroPoint = 0)))
        assertEquals(127, tight.byteValue(1, 255).toInt())
        assertEquals(-128, tight.byteValue(1, 0).toInt())
    }

    @Test
    fun quantizeRoundsHalvesToEvenLikeNumpy() {
        val q = Quantization(1.0, 0)
        assertEquals(2, InputEncoder.quantize(2.5, q, TensorType.INT8).toInt())
        assertEquals(4, InputEncoder.quantize(3.5, q, TensorType.INT8).toInt())
        assertEquals(-2, InputEncoder.quantize(-2.5, q, TensorType.INT8).toInt())
        assertEquals(3, InputEncoder.quantize(2.6, q, TensorType.INT8).toInt())
        // the zero point is added before rounding, as numpy does: rint(0.5 + 1) = 2, not rint(0.5) + 1 = 1
        assertEquals(2, InputEncoder.quantize(0.5, Quantization(1.0, 1), TensorType.UINT8).toInt())
        assertEquals(0, InputEncoder.quantize(-7.0, q, TensorType.UINT8).toInt())
        assertEquals(255, InputEncoder.quantize(1e30, q, TensorType.UINT8).toInt() and 0xFF)
    }

    @Test
    fun encodesRgbInRowMajorOrderAndPadsOutsideContent() {
        val c = card(cardJson(size = 4))
        val enc = InputEncoder(c)
        val lb = Letterbox(4, 2, 4, 4) // content rows 1..2, padding rows 0 and 3
        val pixels = IntArray(16) { argb(it * 10, 255 - it, (it * 7) % 256) }
        val out = FloatArray(enc.size) { 99f }
        enc.encodeFloat(pixels, lb, out)
        for (y in 0 until 4) for (x in 0 until 4) {
            val i = (y * 4 + x) * 3
            val p = pixels[y * 4 + x]
            if (y == 1 || y == 2) {
                assertEquals(((p shr 16) and 0xFF) / 127.5f - 1f, out[i], 1e-6f)
                assertEquals(((p shr 8) and 0xFF) / 127.5f - 1f, out[i + 1], 1e-6f)
                assertEquals((p and 0xFF) / 127.5f - 1f, out[i + 2], 1e-6f)
            } else {
                for (k in 0 until 3) assertEquals(0f, out[i + k], 0f)
            }
        }
    }

    @Test
    fun encodesQuantizedBytes() {
        val c = card(cardJson(inputType = "uint8", inputScale = 0.0078125, inputZeroPoint = 128, mean = "128",
            std = "128", size = 2))
        val enc = InputEncoder(c)
        val out = ByteArray(enc.size)
        enc.encodeQuantized(intArrayOf(argb(1, 2, 3), argb(4, 5, 6), argb(7, 8, 9), argb(250, 251, 252)),
            Letterbox(2, 2, 2, 2), out)
        assertEquals(listOf(1, 2, 3, 4, 5, 6, 7, 8, 9, 250, 251, 252), out.map { it.toInt() and 0xFF })
    }

    @Test(expected = IllegalArgumentException::class)
    fun rejectsWrongPixelCount() {
        val enc = InputEncoder(card(cardJson(size = 4)))
        enc.encodeFloat(IntArray(15), Letterbox(4, 4, 4, 4), FloatArray(enc.size))
    }
}
