import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.edgedeeplab.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.edgedeeplab.demo"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    // The model is memory-mapped from the APK (AssetManager.openFd), which needs it stored uncompressed.
    androidResources {
        noCompress += "tflite"
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

val cameraxVersion = "1.4.1"
// LiteRT is the maintained successor of TensorFlow Lite: same Java API (org.tensorflow.lite.*), new
// Maven coordinates. org.tensorflow:tensorflow-lite* 2.17.0 was the last release under the old ones.
// LiteRT 2.x replaces the Interpreter with CompiledModel; this app uses the 1.x Interpreter API.
val litertVersion = "1.4.1"

dependencies {
    implementation(project(":core"))

    implementation("androidx.core:core-ktx:1.13.1")
    implementation("androidx.appcompat:appcompat:1.7.0")

    implementation("androidx.camera:camera-core:$cameraxVersion")
    implementation("androidx.camera:camera-camera2:$cameraxVersion")
    implementation("androidx.camera:camera-lifecycle:$cameraxVersion")
    implementation("androidx.camera:camera-view:$cameraxVersion")

    implementation("com.google.ai.edge.litert:litert:$litertVersion") // Interpreter, XNNPACK, NNAPI delegate
    implementation("com.google.ai.edge.litert:litert-gpu:$litertVersion") // GpuDelegate, CompatibilityList
    // GpuDelegateFactory.Options lives here; without it GpuDelegate fails with NoClassDefFoundError.
    implementation("com.google.ai.edge.litert:litert-gpu-api:$litertVersion")
}
