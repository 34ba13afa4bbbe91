package org.edgedeeplab.core

/**
 * The model's output tensor copied into a plain array of its element type. The app copies the
 * interpreter's output buffer into one of these (asFloatBuffer().get(...) and so on); keeping
 * java.nio out of this module keeps it the same on the JVM and on Android.
 */
sealed class OutputData {
    class Floats(val values: FloatArray) : OutputData()

    /** uint8 or int8, as stored (uint8 values read with `and 0xFF`). */
    class Bytes(val values: ByteArray, val signed: Boolean) : OutputData()

    class Ints(val values: IntArray) : OutputData()
    class Longs(val values: LongArray) : OutputData()

    companion object {
        /** An array of the right type and size for the card's output tensor. */
        fun allocate(card: ModelCard): OutputData {
            val pixels = card.outputHeight * card.outputWidth
            val n = if (card.outputKind == OutputKind.LOGITS) pixels * card.numClasses else pixels
            return when (card.outputType) {
                TensorType.FLOAT32 -> Floats(FloatArray(n))
                TensorType.UINT8 -> Bytes(ByteArray(n), signed = false)
                TensorType.INT8 -> Bytes(ByteArray(n), signed = true)
                TensorType.INT32 -> Ints(IntArray(n))
                TensorType.INT64 -> Longs(LongArray(n))
            }
        }
    }
}

/**
 * Turns the model output into one class id per output pixel.
 *
 * Logits [1, H, W, C]: arg-max over C (first maximum on ties, like numpy). For uint8 / int8 logits
 * the arg-max is taken on the stored values: dequantizing (q - zeroPoint) * scale with scale > 0
 * keeps their order, so it cannot change the winner.
 * Labels [1, H, W] (an ArgMax inside the model): uint8, int32 or int64 ids, copied.
 */
class MaskDecoder(private val card: ModelCard) {
    val width = card.outputWidth
    val height = card.outputHeight

    /** Writes the class id of each output pixel (row-major, [width] x [height]) into [mask]. */
    fun decode(output: OutputData, mask: IntArray) {
        val pixels = width * height
        require(mask.size == pixels) { "mask holds ${mask.size} pixels, the output $pixels" }
        if (card.outputKind == OutputKind.LOGITS) {
            val c = card.numClasses
            when (output) {
                is OutputData.Floats -> argmax(output.values, c, mask)
                is OutputData.Bytes -> argmax(output.values, output.signed, c, mask)
                else -> throw IllegalArgumentException("logits must be float32, uint8 or int8")
            }
        } else {
            when (output) {
                is OutputData.Bytes -> {
                    checkSize(output.values.size, pixels)
                    for (i in 0 until pixels) {
                        mask[i] = if (output.signed) output.values[i].toInt() else output.values[i].toInt() and 0xFF
                    }
                }
                is OutputData.Ints -> {
                    checkSize(output.values.size, pixels)
                    System.arraycopy(output.values, 0, mask, 0, pixels)
                }
                is OutputData.Longs -> {
                    checkSize(output.values.size, pixels)
                    for (i in 0 until pixels) mask[i] = clampToInt(output.values[i])
                }
                is OutputData.Floats -> throw IllegalArgumentException("labels must be uint8, int32 or int64")
            }
        }
    }

    companion object {
        /** Arg-max over the last axis of float logits laid out [pixels, classes]. */
        fun argmax(logits: FloatArray, classes: Int, mask: IntArray) {
            checkSize(logits.size, mask.size * classes)
            var base = 0
            for (p in mask.indices) {
                var best = 0
                var bestValue = logits[base]
                for (k in 1 until classes) {
                    val v = logits[base + k]
                    if (v > bestValue) {
                        bestValue = v
                        best = k
                    }
                }
                mask[p] = best
                base += classes
            }
        }

        /** Arg-max over the last axis of quantized logits (stored bytes, [signed] for int8). */
        fun argmax(logits: ByteArray, signed: Boolean, classes: Int, mask: IntArray) {
            checkSize(logits.size, mask.size * classes)
            val unsignedMask = if (signed) -1 else 0xFF // int8: keep the sign; uint8: drop it
            var base = 0
            for (p in mask.indices) {
                var best = 0
                var bestValue = logits[base].toInt() and unsignedMask
                for (k in 1 until classes) {
                    val v = logits[base + k].toInt() and unsignedMask
                    if (v > bestValue) {
                        bestValue = v
                        best = k
                    }
                }
                mask[p] = best
                base += classes
            }
        }

        private fun clampToInt(v: Long): Int =
            if (v > Int.MAX_VALUE) Int.MAX_VALUE else if (v < Int.MIN_VALUE) Int.MIN_VALUE else v.toInt()

        private fun checkSize(actual: Int, expected: Int) =
            require(actual == expected) { "output holds $actual values, expected $expected" }
    }
}
