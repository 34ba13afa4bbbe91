package org.edgedeeplab.core

/** A model card that cannot be used, with a one-line reason. */
class ModelCardException(message: String) : Exception(message)

/** Element types of the tensors the app can feed or read (names as in the card and in numpy). */
enum class TensorType(val cardName: String) {
    FLOAT32("float32"),
    UINT8("uint8"),
    INT8("int8"),
    INT32("int32"),
    INT64("int64");

    companion object {
        fun fromCardName(name: String): TensorType? = values().firstOrNull { it.cardName == name }
    }
}

/** What the model's output holds: per-class scores, or a class id per pixel (an ArgMax inside). */
enum class OutputKind(val cardName: String) {
    LOGITS("logits"),
    LABELS("labels");

    companion object {
        fun fromCardName(name: String): OutputKind? = values().firstOrNull { it.cardName == name }
    }
}

/** Affine quantization of a tensor: real = scale * (q - zeroPoint). scale 0 means not quantized. */
class Quantization(val scale: Double, val zeroPoint: Int)

/**
 * Everything the app needs to know to run a segmentation model, read from `model_card.json`
 * (written by `edge-deeplab export-android`).
 *
 * Input pixels v (0..255, RGB) are normalized as (v - mean[c]) / std[c]; quantized inputs then
 * store round(real / scale) + zeroPoint. [numClasses] is the number of class ids the output can hold.
 */
class ModelCard(
    val name: String,
    val modelFile: String,
    val modelBytes: Long,
    val modelSha256: String,
    val inputHeight: Int,
    val inputWidth: Int,
    val inputType: TensorType,
    val inputQuantization: Quantization,
    val mean: DoubleArray,
    val std: DoubleArray,
    val outputKind: OutputKind,
    val outputType: TensorType,
    val outputQuantization: Quantization,
    val outputHeight: Int,
    val outputWidth: Int,
    val numClasses: Int,
    val labels: List<String>,
    val backgroundClass: Int?
) {
    /** The label of a class id, or "class N" when the card has no labels. */
    fun label(classId: Int): String = if (classId in labels.indices) labels[classId] else "class $classId"

    /** One line that says what the card describes (also used by the cross-language test). */
    fun summary(): String {
        val inQ = if (inputType == TensorType.FLOAT32) "" else
            " scale=${inputQuantization.scale} zero_point=${inputQuantization.zeroPoint}"
        return "card $name: input ${inputHeight}x$inputWidth ${inputType.cardName}$inQ" +
            " mean=${mean.joinToString(",")} std=${std.joinToString(",")};" +
            " output ${outputKind.cardName} ${outputType.cardName} ${outputHeight}x$outputWidth" +
            " classes=$numClasses labels=${labels.size} background=${backgroundClass ?: "none"}"
    }

    companion object {
        const val FORMAT = "edge-deeplab-model-card"
        const val VERSION = 1

        private val INPUT_TYPES = setOf(TensorType.FLOAT32, TensorType.UINT8, TensorType.INT8)
        private val LOGITS_TYPES = setOf(TensorType.FLOAT32, TensorType.UINT8, TensorType.INT8)
        private val LABEL_TYPES = setOf(TensorType.UINT8, TensorType.INT32, TensorType.INT64)

        /** Parses and checks a card; every problem is a [ModelCardException] naming the field. */
        fun parse(text: String): ModelCard {
            val root = try {
                Json.parse(text)
            } catch (e: JsonException) {
                throw ModelCardException("model card is not valid JSON: ${e.message}")
            }
            val card = Fields("card", root)
            val format = card.string("format")
            if (format != FORMAT) throw ModelCardException("model card format is '$format', expected '$FORMAT'")
            val version = card.int("version")
            if (version != VERSION) {
                throw ModelCardException("model card version $version is not supported (this app reads $VERSION)")
            }
            val input = card.obj("input")
            val output = card.obj("output")

            val inputType = input.type("type", INPUT_TYPES)
            val inputQ = Quantization(input.double("scale"), input.int("zero_point"))
            if (inputType != TensorType.FLOAT32 && !(inputQ.scale > 0.0)) {
                throw ModelCardException("input.scale must be > 0 for a ${inputType.cardName} input")
            }
            val mean = input.channels("mean")
            val std = input.channels("std")
            if (std.any { !(it != 0.0 && it.isFinite()) }) throw ModelCardException("input.std must be non-zero")

            val kind = OutputKind.fromCardName(output.string("kind"))
                ?: throw ModelCardException("output.kind must be 'logits' or 'labels'")
            val outputType = output.type("type", if (kind == OutputKind.LOGITS) LOGITS_TYPES else LABEL_TYPES)
            val numClasses = output.int("num_classes")
            if (numClasses < 2) throw ModelCardException("output.num_classes must be at least 2, got $numClasses")

            val labels = card.stringListOrNull("labels") ?: emptyList()
            if (labels.isNotEmpty() && labels.size != numClasses) {
                throw ModelCardException("card has ${labels.size} labels for $numClasses classes")
            }
            val background = card.intOrNull("background_class")
            if (background != null && background !in 0 until numClasses) {
                throw ModelCardException("background_class $background is not a class id (0..${numClasses - 1})")
            }
            return ModelCard(
                name = card.string("name"),
                modelFile = card.string("model_file"),
                modelBytes = card.long("model_bytes"),
                modelSha256 = card.string("model_sha256"),
                inputHeight = input.positiveInt("height"),
                inputWidth = input.positiveInt("width"),
                inputType = inputType,
                inputQuantization = inputQ,
                mean = mean,
                std = std,
                outputKind = kind,
                outputType = outputType,
                outputQuantization = Quantization(output.double("scale"), output.int("zero_point")),
                outputHeight = output.positiveInt("height"),
                outputWidth = output.positiveInt("width"),
                numClasses = numClasses,
                labels = labels,
                backgroundClass = background
            )
        }
    }

    /** Typed access to one JSON object of the card; [path] names it in error messages. */
    private class Fields(private val path: String, value: Any?) {
        private val map: Map<*, *> = value as? Map<*, *> ?: throw ModelCardException("$path must be a JSON object")

        private fun name(key: String) = if (path == "card") key else "$path.$key"

        private fun required(key: String): Any =
            map[key] ?: throw ModelCardException("model card has no '${name(key)}'")

        fun obj(key: String) = Fields(name(key), required(key))

        fun string(key: String): String =
            required(key) as? String ?: throw ModelCardException("${name(key)} must be a string")

        fun double(key: String): Double =
            required(key) as? Double ?: throw ModelCardException("${name(key)} must be a number")

        fun long(key: String): Long {
            val d = double(key)
            if (d != Math.floor(d) || Math.abs(d) > 9.0e15) throw ModelCardException("${name(key)} must be an integer")
            return d.toLong()
        }

        fun int(key: String): Int {
            val v = long(key)
            if (v < Int.MIN_VALUE || v > Int.MAX_VALUE) throw ModelCardException("${name(key)} is out of range")
            return v.toInt()
        }

        fun intOrNull(key: String): Int? = if (map[key] == null) null else int(key)

        fun positiveInt(key: String): Int {
            val v = int(key)
            if (v <= 0) throw ModelCardException("${name(key)} must be positive, got $v")
            return v
        }

        fun type(key: String, allowed: Set<TensorType>): TensorType {
            val text = string(key)
            val type = TensorType.fromCardName(text)
            if (type == null || type !in allowed) {
                throw ModelCardException(
                    "${name(key)} '$text' is not supported here (one of ${allowed.joinToString { it.cardName }})"
                )
            }
            return type
        }

        /** A per-channel RGB value: a number (all channels) or a list of 1 or 3 numbers. */
        fun channels(key: String): DoubleArray {
            val v = required(key)
            val numbers = when (v) {
                is Double -> listOf(v)
                is List<*> -> v.map { it as? Double ?: throw ModelCardException("${name(key)} must hold numbers") }
                else -> throw ModelCardException("${name(key)} must be a number or a list of numbers")
            }
            return when (numbers.size) {
                1 -> DoubleArray(3) { numbers[0] }
                3 -> DoubleArray(3) { numbers[it] }
                else -> throw ModelCardException("${name(key)} must have 1 or 3 values, got ${numbers.size}")
            }
        }

        fun stringListOrNull(key: String): List<String>? {
            val v = map[key] ?: return null
            val list = v as? List<*> ?: throw ModelCardException("${name(key)} must be a list of strings")
            return list.map { it as? String ?: throw ModelCardException("${name(key)} must be a list of strings") }
        }
    }
}
