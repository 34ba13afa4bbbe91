pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google() // CameraX and LiteRT (com.google.ai.edge.litert) are published here
        mavenCentral()
    }
}

rootProject.name = "edge-deeplab-demo"

// :core is plain Kotlin (no Android): the model card, geometry, input encoding, arg-max and colours.
// Its tests run on any JVM; run_jvm_tests.sh runs them without Gradle.
include(":app", ":core")
