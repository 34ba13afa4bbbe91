package org.edgedeeplab.core

import kotlin.math.max
import kotlin.math.min

/**
 * Turns RGB pixels into the model's input tensor values, as the card says: normalize each channel
 * ((v - mean) / std), then for uint8 / int8 inputs quantize (round(real / scale) + zeroPoint,
 * clamped). Padding pixels get the value of a normalized 0 (the mean colour).
 *
 * Every channel value 0..255 maps to one tensor value, so the work is done once, into lookup tables;
 * per frame, encoding is a table look-up per channel.
 */
class InputEncoder(card: ModelCard) {
    val width = card.inputWidth
    val height = card.inputHeight
    val type = card.inputType

    /** For float inputs: LUT[c * 256 + v]. */
    private val floatTable = FloatArray(3 * 256)

    /** For quantized inputs: the stored byte (uint8 as its low 8 bits), LUT[c * 256 + v]. */
    private val byteTable = ByteArray(3 * 256)

    val floatPad: Float = 0f
    val bytePad: Byte

    init {
        for (c in 0 until 3) {
            for (v in 0 until 256) {
                val real = (v - card.mean[c]) / card.std[c] // in double, as the Python runtime computes it
                floatTable[c * 256 + v] = real.toFloat()
                if (type != TensorType.FLOAT32) byteTable[c * 256 + v] = quantize(real, card.inputQuantization, type)
            }
        }
        bytePad = if (type == TensorType.FLOAT32) 0 else quantize(0.0, card.inputQuantization, type)
    }

    /** Number of values in one input tensor (H * W * 3). */
    val size get() = width * height * 3

    /** The tensor value channel [c] (0 R, 1 G, 2 B) of pixel value [v] becomes, for float inputs. */
    fun floatValue(c: Int, v: Int) = floatTable[c * 256 + v]

    /** The stored byte channel [c] of pixel value [v] becomes, for quantized inputs. */
    fun byteValue(c: Int, v: Int) = byteTable[c * 256 + v]

    /**
     * Encodes [pixels] (packed 0xAARRGGBB, row-major, [width] x [height]: what Bitmap.getPixels
     * gives) into [out] (HWC, RGB). Pixels outside [letterbox]'s content get the padding value.
     */
    fun encodeFloat(pixels: IntArray, letterbox: Letterbox, out: FloatArray) {
        check(type == TensorType.FLOAT32) { "model input is ${type.cardName}, not float32" }
        checkSizes(pixels.size, out.size, letterbox)
        var o = 0
        for (y in 0 until height) {
            for (x in 0 until width) {
                if (letterbox.isContent(x, y)) {
                    val p = pixels[y * width + x]
                    out[o] = floatTable[(p shr 16) and 0xFF]
                    out[o + 1] = floatTable[256 + ((p shr 8) and 0xFF)]
                    out[o + 2] = floatTable[512 + (p and 0xFF)]
                } else {
                    out[o] = floatPad
                    out[o + 1] = floatPad
                    out[o + 2] = floatPad
                }
                o += 3
            }
        }
    }

    /** Like [encodeFloat], for uint8 / int8 inputs: [out] holds the raw bytes of the tensor. */
    fun encodeQuantized(pixels: IntArray, letterbox: Letterbox, out: ByteArray) {
        check(type != TensorType.FLOAT32) { "model input is float32, not quantized" }
        checkSizes(pixels.size, out.size, letterbox)
        var o = 0
        for (y in 0 until height) {
            for (x in 0 until width) {
                if (letterbox.isContent(x, y)) {
                    val p = pixels[y * width + x]
                    out[o] = byteTable[(p shr 16) and 0xFF]
                    out[o + 1] = byteTable[256 + ((p shr 8) and 0xFF)]
                    out[o + 2] = byteTable[512 + (p and 0xFF)]
                } else {
                    out[o] = bytePad
                    out[o + 1] = bytePad
                    out[o + 2] = bytePad
                }
                o += 3
            }
        }
    }

    private fun checkSizes(pixelCount: Int, outCount: Int, letterbox: Letterbox) {
        require(pixelCount == width * height) { "expected ${width}x$height pixels, got $pixelCount" }
        require(outCount == size) { "output array holds $outCount values, the input tensor $size" }
        require(letterbox.dstWidth == width && letterbox.dstHeight == height) { "letterbox is for another size" }
    }

    companion object {
        /**
         * round(real / scale) + zeroPoint, clamped to the type's range, as the byte stored in the tensor.
         * Halves round to even (numpy's rule), so the app feeds what edge_deeplab.runtime.interpreter feeds.
         */
        fun quantize(real: Double, q: Quantization, type: TensorType): Byte {
            val lo = if (type == TensorType.INT8) -128 else 0
            val hi = if (type == TensorType.INT8) 127 else 255
            // zeroPoint is added before rounding: with halves to even, rint(x) + zp is not rint(x + zp)
            val stored = min(1e6, max(-1e6, real / q.scale + q.zeroPoint)) // beyond any range, no Int overflow
            val v = Math.rint(stored).toInt()
            return min(hi, max(lo, v)).toByte()
        }
    }
}
