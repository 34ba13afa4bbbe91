package org.edgedeeplab.demo

import android.content.Context
import android.content.res.AssetManager
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Matrix
import android.graphics.Paint
import android.os.Build
import androidx.camera.core.ImageProxy
import org.edgedeeplab.core.Box
import org.edgedeeplab.core.ColorMap
import org.edgedeeplab.core.FrameTransform
import org.edgedeeplab.core.InputEncoder
import org.edgedeeplab.core.LegendEntry
import org.edgedeeplab.core.MaskDecoder
import org.edgedeeplab.core.ModelCard
import org.edgedeeplab.core.ModelCardException
import org.edgedeeplab.core.OutputData
import org.edgedeeplab.core.OutputKind
import org.edgedeeplab.core.TensorType
import org.edgedeeplab.core.legendOf
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.Tensor
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import java.io.Closeable
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import java.security.MessageDigest

/** Where the interpreter runs the model. */
enum class Accelerator(val title: String) {
    CPU("CPU (XNNPACK)"),
    GPU("GPU"),
    NNAPI("NNAPI");

    companion object {
        /** NNAPI exists from Android 8.1 and is deprecated from Android 15; offered in between only. */
        fun available(): List<Accelerator> =
            if (Build.VERSION.SDK_INT in Build.VERSION_CODES.O_MR1 until 35) values().toList() else listOf(CPU, GPU)
    }
}

/** A problem with the model or its card that the user can fix; shown on screen. */
class ModelException(message: String, cause: Throwable? = null) : Exception(message, cause)

/** One segmented camera frame, ready to draw. */
class Segmentation(
    val mask: Bitmap, // class colours, output size
    val maskRegion: Box, // the part of [mask] that shows the camera frame (the rest is letterbox padding)
    val uprightWidth: Int, // the camera frame's size once rotated upright
    val uprightHeight: Int,
    val legend: List<LegendEntry>,
    val colors: ColorMap,
    val inferenceMs: Double, // Interpreter.run alone
    val totalMs: Double // frame to coloured mask
)

/**
 * A LiteRT Interpreter for the model in the app's assets, with everything around it: camera frame to
 * input tensor (rotate, letterbox, normalize / quantize) and output tensor to coloured mask. The
 * pure parts come from :core; this class moves pixels between Android objects and the interpreter.
 *
 * Not thread-safe: create, use and close it on one thread (the GPU delegate requires that anyway).
 */
class Segmenter private constructor(
    val card: ModelCard,
    private val interpreter: Interpreter,
    private val delegate: Delegate?,
    val accelerator: Accelerator,
    val threads: Int
) : Closeable {
    private val encoder = InputEncoder(card)
    private val decoder = MaskDecoder(card)
    private val colors = ColorMap(card.numClasses, MASK_ALPHA, card.backgroundClass)

    private val inputFloats = if (card.inputType == TensorType.FLOAT32) FloatArray(encoder.size) else null
    private val inputBytes = if (card.inputType == TensorType.FLOAT32) null else ByteArray(encoder.size)
    private val inputBuffer = ByteBuffer.allocateDirect(interpreter.getInputTensor(0).numBytes())
        .order(ByteOrder.nativeOrder())
    private val output = OutputData.allocate(card)
    private val outputBuffer = ByteBuffer.allocateDirect(interpreter.getOutputTensor(0).numBytes())
        .order(ByteOrder.nativeOrder())

    private val inputBitmap = Bitmap.createBitmap(card.inputWidth, card.inputHeight, Bitmap.Config.ARGB_8888)
    private val inputCanvas = Canvas(inputBitmap)
    private val inputPixels = IntArray(card.inputWidth * card.inputHeight)
    private val framePaint = Paint(Paint.FILTER_BITMAP_FLAG)
    private val frameMatrix = Matrix()
    private val mask = IntArray(card.outputWidth * card.outputHeight)
    private val maskColors = IntArray(mask.size)
    private var transform: FrameTransform? = null

    /** Segments one camera frame (RGBA_8888 ImageProxy); the caller closes the image. */
    fun segment(image: ImageProxy): Segmentation {
        val start = System.nanoTime()
        val t = transformFor(image.width, image.height, image.imageInfo.rotationDegrees)

        // Rotate and letterbox with a Canvas (bilinear filtering); the encoder pads outside the content.
        val frame = image.toBitmap()
        val content = t.letterbox.content
        inputCanvas.save()
        inputCanvas.clipRect(content.left, content.top, content.right, content.bottom)
        inputCanvas.drawBitmap(frame, frameMatrix, framePaint)
        inputCanvas.restore()
        inputBitmap.getPixels(inputPixels, 0, card.inputWidth, 0, 0, card.inputWidth, card.inputHeight)

        inputBuffer.rewind()
        if (inputFloats != null) {
            encoder.encodeFloat(inputPixels, t.letterbox, inputFloats)
            inputBuffer.asFloatBuffer().put(inputFloats)
        } else {
            encoder.encodeQuantized(inputPixels, t.letterbox, inputBytes!!)
            inputBuffer.put(inputBytes)
            inputBuffer.rewind()
        }

        outputBuffer.rewind()
        val runStart = System.nanoTime()
        interpreter.run(inputBuffer, outputBuffer)
        val inferenceMs = (System.nanoTime() - runStart) / 1e6

        outputBuffer.rewind()
        when (output) {
            is OutputData.Floats -> outputBuffer.asFloatBuffer().get(output.values)
            is OutputData.Bytes -> outputBuffer.get(output.values)
            is OutputData.Ints -> outputBuffer.asIntBuffer().get(output.values)
            is OutputData.Longs -> outputBuffer.asLongBuffer().get(output.values)
        }
        decoder.decode(output, mask)
        colors.paint(mask, maskColors)
        // A new bitmap per frame: the view may still be drawing the previous one.
        val maskBitmap = Bitmap.createBitmap(maskColors, card.outputWidth, card.outputHeight, Bitmap.Config.ARGB_8888)
        return Segmentation(
            mask = maskBitmap,
            maskRegion = t.letterbox.contentInOutput(card.outputWidth, card.outputHeight),
            uprightWidth = t.uprightWidth,
            uprightHeight = t.uprightHeight,
            legend = legendOf(mask, card),
            colors = colors,
            inferenceMs = inferenceMs,
            totalMs = (System.nanoTime() - start) / 1e6
        )
    }

    private fun transformFor(width: Int, height: Int, rotation: Int): FrameTransform {
        val current = transform
        if (current != null && current.frameWidth == width && current.frameHeight == height &&
            current.rotationDegrees == rotation
        ) return current
        val t = FrameTransform(width, height, rotation, card.inputWidth, card.inputHeight)
        frameMatrix.setValues(t.matrix())
        transform = t
        return t
    }

    override fun close() {
        interpreter.close()
        delegate?.close()
    }

    companion object {
        const val MODEL_ASSET = "model.tflite"
        const val CARD_ASSET = "model_card.json"
        private const val MASK_ALPHA = 0x90

        /** The model card from the assets, checked; a [ModelException] says what to do otherwise. */
        fun loadCard(assets: AssetManager): ModelCard {
            val text = try {
                assets.open(CARD_ASSET).bufferedReader().use { it.readText() }
            } catch (e: java.io.IOException) {
                throw ModelException(
                    "No model in the app. Run: edge-deeplab export-android MODEL.tflite --app android_demo, then rebuild."
                )
            }
            return try {
                ModelCard.parse(text)
            } catch (e: ModelCardException) {
                throw ModelException("$CARD_ASSET: ${e.message}")
            }
        }

        /**
         * An interpreter for the card's model on [accelerator]. [threads] is the CPU thread count (for
         * the GPU and NNAPI it serves the operations they leave to the CPU).
         */
        fun create(context: Context, card: ModelCard, accelerator: Accelerator, threads: Int): Segmenter {
            val model = mapAsset(context.assets, card.modelFile)
            checkModelBytes(model, card)
            val options = Interpreter.Options().setNumThreads(threads)
            var delegate: Delegate? = null
            when (accelerator) {
                Accelerator.CPU -> options.setUseXNNPACK(true)
                Accelerator.GPU -> {
                    val compatibility = CompatibilityList()
                    try {
                        if (!compatibility.isDelegateSupportedOnThisDevice) {
                            throw ModelException("The GPU delegate does not support this device's GPU.")
                        }
                        val gpu = GpuDelegate(compatibility.bestOptionsForThisDevice)
                        options.addDelegate(gpu)
                        delegate = gpu
                    } finally {
                        compatibility.close()
                    }
                }
                Accelerator.NNAPI -> {
                    val nnapi = NnApiDelegate()
                    options.addDelegate(nnapi)
                    delegate = nnapi
                }
            }
            val interpreter = try {
                Interpreter(model, options)
            } catch (e: Exception) {
                delegate?.close()
                throw ModelException("${accelerator.title} cannot run this model: ${e.message}", e)
            }
            try {
                checkTensors(interpreter, card)
            } catch (e: ModelException) {
                interpreter.close()
                delegate?.close()
                throw e
            }
            return Segmenter(card, interpreter, delegate, accelerator, threads)
        }

        private fun mapAsset(assets: AssetManager, name: String): MappedByteBuffer =
            try {
                assets.openFd(name).use { fd ->
                    FileInputStream(fd.fileDescriptor).use { stream ->
                        stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                    }
                }
            } catch (e: java.io.IOException) {
                throw ModelException("$name is missing from the app's assets (run edge-deeplab export-android).", e)
            }

        /** The card records the model's size and SHA-256: a model and card from different exports are refused. */
        private fun checkModelBytes(model: MappedByteBuffer, card: ModelCard) {
            val sha256 = MessageDigest.getInstance("SHA-256").run {
                update(model.duplicate())
                digest().joinToString("") { "%02x".format(it) }
            }
            if (model.capacity().toLong() != card.modelBytes || sha256 != card.modelSha256) {
                throw ModelException("${card.modelFile} is not the model the card describes: run export-android again.")
            }
        }

        /** The interpreter's tensors must be what the card describes (catches a stale or hand-edited card). */
        private fun checkTensors(interpreter: Interpreter, card: ModelCard) {
            if (interpreter.inputTensorCount != 1 || interpreter.outputTensorCount != 1) {
                throw ModelException("the app runs models with one input and one output")
            }
            val input = interpreter.getInputTensor(0)
            expect("input", input, intArrayOf(1, card.inputHeight, card.inputWidth, 3), card.inputType)
            val output = interpreter.getOutputTensor(0)
            val pixels = intArrayOf(1, card.outputHeight, card.outputWidth)
            val shape = if (card.outputKind == OutputKind.LOGITS) pixels + card.numClasses else pixels
            // A label output may also be [1, H, W, 1].
            val outShape = output.shape()
            val matches = outShape.contentEquals(shape) ||
                (card.outputKind == OutputKind.LABELS && outShape.contentEquals(pixels + 1))
            if (!matches) throw ModelException("output shape ${outShape.contentToString()} is not what the card says")
            expect("output", output, outShape, card.outputType)
        }

        private fun expect(which: String, tensor: Tensor, shape: IntArray, type: TensorType) {
            if (!tensor.shape().contentEquals(shape)) {
                throw ModelException("$which shape ${tensor.shape().contentToString()}, the card says ${shape.contentToString()}")
            }
            val actual = tensor.dataType().name.lowercase()
            if (actual != type.cardName) throw ModelException("$which type $actual, the card says ${type.cardName}")
        }
    }
}
