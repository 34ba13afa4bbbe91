package org.edgedeeplab.demo

import android.Manifest
import android.content.pm.PackageManager
import android.os.Bundle
import android.util.Size
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.core.resolutionselector.AspectRatioStrategy
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.camera.core.resolutionselector.ResolutionStrategy
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import org.edgedeeplab.core.FpsMeter
import org.edgedeeplab.core.ModelCard
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Camera preview with the segmentation drawn over it: CameraX Preview + ImageAnalysis (keep only the
 * latest frame, RGBA), the model run by [Segmenter] on one background thread, and controls for the
 * accelerator and the CPU thread count.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var previewView: PreviewView
    private lateinit var overlay: OverlayView
    private lateinit var stats: TextView

    /** All interpreter work happens on this one thread (the GPU delegate must stay on its thread). */
    private val analysisExecutor: ExecutorService = Executors.newSingleThreadExecutor()

    private var card: ModelCard? = null

    /** What the user picked; the analysis thread rebuilds the Segmenter when it changes. */
    @Volatile private var wanted = Choice(Accelerator.CPU, defaultThreads())

    // Touched only on the analysis thread.
    private var segmenter: Segmenter? = null
    private var failedChoice: Choice? = null
    private val fps = FpsMeter()

    private data class Choice(val accelerator: Accelerator, val threads: Int)

    private val cameraPermission = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else stats.setText(R.string.camera_denied)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        previewView = findViewById(R.id.preview)
        overlay = findViewById(R.id.overlay)
        stats = findViewById(R.id.stats)
        setUpControls()

        card = try {
            Segmenter.loadCard(assets)
        } catch (e: ModelException) {
            stats.text = e.message
            return // nothing to run: no camera either
        }
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            cameraPermission.launch(Manifest.permission.CAMERA)
        }
    }

    private fun setUpControls() {
        val accelerators = Accelerator.available()
        val acceleratorSpinner = findViewById<Spinner>(R.id.accelerator)
        acceleratorSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item,
            accelerators.map { it.title })
        acceleratorSpinner.onItemSelectedListener = onSelected { position ->
            wanted = wanted.copy(accelerator = accelerators[position])
        }

        val threadChoices = (1..Runtime.getRuntime().availableProcessors().coerceAtMost(8)).toList()
        val threadSpinner = findViewById<Spinner>(R.id.threads)
        threadSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, threadChoices)
        threadSpinner.setSelection(threadChoices.indexOf(wanted.threads).coerceAtLeast(0))
        threadSpinner.onItemSelectedListener = onSelected { position ->
            wanted = wanted.copy(threads = threadChoices[position])
        }
    }

    private fun startCamera() {
        val providerFuture = ProcessCameraProvider.getInstance(this)
        providerFuture.addListener({
            val provider = providerFuture.get()
            // Same aspect ratio for both use cases, so the analysed frame covers what the preview shows.
            val aspect = AspectRatioStrategy.RATIO_4_3_FALLBACK_AUTO_STRATEGY
            val preview = Preview.Builder()
                .setResolutionSelector(ResolutionSelector.Builder().setAspectRatioStrategy(aspect).build())
                .build()
            preview.setSurfaceProvider(previewView.surfaceProvider)
            val analysis = ImageAnalysis.Builder()
                .setResolutionSelector(
                    ResolutionSelector.Builder()
                        .setAspectRatioStrategy(aspect)
                        // Models take 257..513 pixels; a larger frame only costs copying and scaling.
                        .setResolutionStrategy(
                            ResolutionStrategy(Size(640, 480), ResolutionStrategy.FALLBACK_RULE_CLOSEST_HIGHER_THEN_LOWER)
                        )
                        .build()
                )
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(analysisExecutor) { image -> analyze(image) }
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis)
        }, ContextCompat.getMainExecutor(this))
    }

    /** Runs on the analysis thread. */
    private fun analyze(image: ImageProxy) {
        try {
            val s = currentSegmenter() ?: return
            val result = s.segment(image)
            val rate = fps.tick(System.nanoTime())
            val c = s.card
            val line = String.format(
                Locale.US, "%s ×%d  %.1f ms model  %.1f ms frame  %.1f FPS\n%s %dx%d %s → %s %s",
                s.accelerator.title, s.threads, result.inferenceMs, result.totalMs, rate,
                c.name, c.inputWidth, c.inputHeight, c.inputType.cardName, c.outputKind.cardName, c.outputType.cardName
            )
            runOnUiThread {
                overlay.show(result)
                stats.text = line
            }
        } catch (e: Exception) {
            val message = "error: ${e.message}"
            runOnUiThread { stats.text = message }
        } finally {
            image.close()
        }
    }

    /** The Segmenter for the user's current choice, rebuilt when it changed; null when it cannot be built. */
    private fun currentSegmenter(): Segmenter? {
        val choice = wanted
        val current = segmenter
        if (current != null && current.accelerator == choice.accelerator && current.threads == choice.threads) {
            return current
        }
        if (choice == failedChoice) return null // the message is on screen; wait for another choice
        current?.close()
        segmenter = null
        fps.reset()
        runOnUiThread { overlay.clear() }
        return try {
            Segmenter.create(this, card ?: return null, choice.accelerator, choice.threads).also {
                segmenter = it
                failedChoice = null
            }
        } catch (e: Throwable) { // GPU / NNAPI refusals include NoClassDefFoundError-type errors
            failedChoice = choice
            val message = "${choice.accelerator.title}: ${e.message ?: e.javaClass.simpleName}. Pick another accelerator."
            runOnUiThread { stats.text = message }
            null
        }
    }

    override fun onDestroy() {
        super.onDestroy()
        analysisExecutor.execute {
            segmenter?.close()
            segmenter = null
        }
        analysisExecutor.shutdown()
    }

    private fun onSelected(action: (Int) -> Unit) = object : AdapterView.OnItemSelectedListener {
        override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) = action(position)
        override fun onNothingSelected(parent: AdapterView<*>?) = Unit
    }

    private fun defaultThreads() = Runtime.getRuntime().availableProcessors().coerceIn(1, 4)
}
