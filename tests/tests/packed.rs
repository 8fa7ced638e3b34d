//! The packed output layout end to end (dispatcher `output_layout = "packed"`): one ustar per
//! batch, its index in the manifest, one frame read back with a ranged GET, the pack opened by
//! the system `tar`, a corrupt frame left out and listed, the usage the manifest reports, a
//! redelivered batch that rewrites its pack without adding to the usage, and `framefleet fetch`
//! extracting the packs. Also, in both layouts, a segment's batch (with `first_index`) naming
//! its edge maps by global frame index, as an unsegmented capture names the same frames.

use std::collections::BTreeMap;

use framefleet_core::frames::frame_index;
use framefleet_core::jobs::JobStatus;
use framefleet_core::message::{FrameBatch, OutputLayout};
use framefleet_core::pack::Pack;
use framefleet_dispatcher::settings::DispatcherConfig;
use framefleet_e2e::media::video_bytes;
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};
use framefleet_edge::EdgeParams;
use framefleet_worker::output::output_key;

async fn fetch(stack: &Stack, video_id: &str, out: &std::path::Path) -> serde_json::Value {
    let output = stack
        .framefleet(&["fetch", video_id, "--out", out.to_str().unwrap(), "--json"])
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn packed_job_writes_one_indexed_tar_per_batch() {
    let mut stack = spawn_stack_with(StackOptions {
        dispatcher_config: DispatcherConfig {
            batch_size: 4,
            output_layout: OutputLayout::Packed,
            ..DispatcherConfig::default()
        },
        ..StackOptions::without_workers()
    })
    .await
    .unwrap();
    stack.version_processed_bucket().await.unwrap();
    let (video, frames) = video_bytes("packed.mp4", 64, 48, "8", 1.0).await.unwrap();
    let video_id = stack.upload("packed.mp4", video).await.unwrap();
    let id = video_id.to_string();
    let record = stack.wait_processing(&video_id).await.unwrap();
    let batches = record.batches.unwrap();
    assert!(batches >= 2, "{batches} batches of {frames} frames");
    // The batch messages as fanned out (kept for the redelivery below): they carry the layout.
    let received = stack
        .clients
        .sqs
        .receive_message()
        .queue_url(&stack.provisioned.frames_queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let mut sent: Vec<FrameBatch> = received
        .messages()
        .iter()
        .map(|m| FrameBatch::parse(m.body().unwrap()).unwrap())
        .collect();
    sent.sort_by_key(|b| b.batch_index);
    assert_eq!(sent.len() as u64, batches);
    assert!(sent.iter().all(|b| b.layout == OutputLayout::Packed));
    // Frame 2 (batch 0) is corrupt: it must fail, be left out of pack 0 and be listed.
    let captured = stack.captured_frames(&id).await.unwrap();
    assert_eq!(captured.len() as u64, frames);
    let broken = captured[2].clone();
    stack.corrupt_frame(&broken).await.unwrap();
    stack.start_worker().await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.processed_frames, frames - 1);
    assert_eq!(record.failed_frames, 1);

    // Outputs: one tar per batch, the manifest and the preview; no per-frame objects.
    let processed = &stack.resources.processed_bucket;
    let keys = stack.list(processed, &format!("{id}/")).await.unwrap();
    let mut expected: Vec<String> = (0..batches)
        .map(|i| format!("{id}/packs/{i:06}.tar"))
        .collect();
    expected.push(format!("{id}/manifest.json"));
    expected.push(format!("{id}/preview.mp4"));
    let mut sorted_keys = keys.clone();
    sorted_keys.sort();
    expected.sort();
    assert_eq!(sorted_keys, expected);
    assert!(!keys.iter().any(|k| frame_index(k).is_some()));

    // The manifest: layout, every pack with its index, the failed frame with its reason.
    let manifest = stack.manifest(&id).await.unwrap();
    assert_eq!(manifest["output"]["layout"], "packed", "{manifest:#}");
    let packs: Vec<Pack> = serde_json::from_value(manifest["output"]["packs"].clone()).unwrap();
    assert_eq!(packs.len() as u64, batches);
    assert_eq!(
        packs.iter().map(|p| p.frames.len() as u64).sum::<u64>(),
        frames - 1
    );
    let failed = manifest["failed_frames"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["key"], broken.as_str());
    assert!(!failed[0]["reason"].as_str().unwrap().is_empty());
    let params: EdgeParams = serde_json::from_value(manifest["parameters"].clone()).unwrap();
    let broken_name = output_key(&id, &broken, "jpg");
    let broken_name = broken_name.rsplit('/').next().unwrap();
    assert_eq!(
        packs[0]
            .frames
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        sent[0]
            .frame_keys
            .iter()
            .map(|k| output_key(&id, k, "jpg"))
            .map(|k| k.rsplit('/').next().unwrap().to_string())
            .filter(|name| name != broken_name)
            .collect::<Vec<_>>(),
        "pack 0 holds batch 0's frames in order, less the corrupt one"
    );

    // Every member is exactly the offline kernel's edge map of its captured frame.
    let by_name: BTreeMap<String, String> = captured
        .iter()
        .map(|k| {
            let name = output_key(&id, k, "jpg");
            (name.rsplit('/').next().unwrap().to_string(), k.clone())
        })
        .collect();
    let mut whole_packs = Vec::new();
    for pack in &packs {
        let tar = stack.get(processed, &pack.key).await.unwrap();
        for frame in &pack.frames {
            let member = &tar[frame.offset as usize..frame.end() as usize];
            let captured = stack
                .get(&stack.resources.frames_bucket, &by_name[&frame.name])
                .await
                .unwrap();
            let offline = framefleet_edge::process(&captured, &params).unwrap();
            assert!(member == offline.bytes, "{} in {}", frame.name, pack.key);
        }
        whole_packs.push(tar);
    }

    // One frame, one ranged GET: the bytes of that member, a JPEG of the frame's size.
    let wanted = &packs[1].frames[0];
    let ranged = stack
        .clients
        .s3
        .get_object()
        .bucket(processed)
        .key(&packs[1].key)
        .range(wanted.range())
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(ranged.len() as u64, wanted.length);
    assert_eq!(
        &ranged[..],
        &whole_packs[1][wanted.offset as usize..wanted.end() as usize]
    );
    let image = image::load_from_memory_with_format(&ranged, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((image.width(), image.height()), (64, 48));

    // The system tar opens pack 0: the indexed members, nothing else, same bytes.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("pack.tar");
    std::fs::write(&archive, &whole_packs[0]).unwrap();
    let extracted = dir.path().join("x");
    std::fs::create_dir(&extracted).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&extracted)
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&extracted)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut indexed: Vec<String> = packs[0].frames.iter().map(|f| f.name.clone()).collect();
    indexed.sort();
    assert_eq!(names, indexed);
    for frame in &packs[0].frames {
        assert_eq!(
            std::fs::read(extracted.join(&frame.name)).unwrap(),
            &whole_packs[0][frame.offset as usize..frame.end() as usize]
        );
    }

    // Usage: every frame read once, one PUT per pack, send + receive + delete per batch.
    let workers = &manifest["usage"]["workers"];
    assert_eq!(workers["s3_get_requests"], frames, "{workers:#}");
    assert_eq!(workers["s3_put_requests"], batches, "{workers:#}");
    assert_eq!(workers["sqs_requests"], 3 * batches, "{workers:#}");
    assert!(workers["dynamodb_read_units"].as_u64().unwrap() >= batches);
    assert!(workers["dynamodb_write_units"].as_u64().unwrap() >= 5 * batches);
    assert!(
        workers["worker_cpu_ms"].as_u64().unwrap() > 0,
        "{workers:#}"
    );
    // The completion read the job item and, with one Query, the markers (each under 4 KB here).
    assert_eq!(
        manifest["usage"]["manifest"]["dynamodb_read_units"], 2,
        "{:#}",
        manifest["usage"]["manifest"]
    );
    // Packs, the manifest, the pinned upload copy, and MediaConvert's frames and preview.
    assert_eq!(
        manifest["usage"]["total"]["s3_put_requests"],
        batches + 1 + 1 + frames + 1
    );
    assert!(manifest["cost"]["total_usd"].as_f64().unwrap() > 0.0);
    assert!(manifest["cost"]["per_1000_frames_usd"].as_f64().unwrap() > 0.0);
    assert!(manifest["cost"]["prices_read_on"].is_string());
    let usage_before = record.usage;
    assert!(usage_before.s3_get_requests > 0);

    // `framefleet fetch` downloads the packs and extracts every edge map, resumably.
    let out = dir.path().join("fetched");
    let report = fetch(&stack, &id, &out).await;
    assert_eq!(report["edge_maps"], frames - 1, "{report}");
    assert_eq!(report["extracted"], frames - 1, "{report}");
    for pack in &packs {
        for frame in &pack.frames {
            assert_eq!(
                std::fs::read(out.join(&frame.name)).unwrap(),
                whole_packs[packs.iter().position(|p| p.key == pack.key).unwrap()]
                    [frame.offset as usize..frame.end() as usize],
                "{}",
                frame.name
            );
        }
    }
    assert!(out.join("packs/000000.tar").is_file());
    std::fs::write(out.join(&packs[1].frames[0].name), b"cut").unwrap();
    let again = fetch(&stack, &id, &out).await;
    assert_eq!(again["downloaded"], 0, "{again}");
    assert_eq!(again["extracted"], 1, "only the damaged edge map: {again}");

    // A duplicate of batch 0 after it was counted, with one of its frames changed since (a
    // second capture of the video, a re-encode): the counted pack is not rewritten, so the
    // manifest's offsets still point at the bytes they describe, and the usage does not move.
    let pack0 = format!("{id}/packs/000000.tar");
    assert_eq!(stack.processed_versions(&pack0).await.unwrap().len(), 1);
    let other = stack
        .get(&stack.resources.frames_bucket, &captured[5])
        .await
        .unwrap();
    stack
        .clients
        .s3
        .put_object()
        .bucket(&stack.resources.frames_bucket)
        .key(&sent[0].frame_keys[0])
        .body(other.into())
        .send()
        .await
        .unwrap();
    stack
        .clients
        .sqs
        .send_message()
        .queue_url(&stack.provisioned.frames_queue_url)
        .message_body(sent[0].to_body())
        .send()
        .await
        .unwrap();
    stack
        .wait_until_empty(&stack.provisioned.frames_queue_url)
        .await
        .unwrap();
    let written = stack.processed_versions(&pack0).await.unwrap();
    assert_eq!(written.len(), 1, "the counted pack was rewritten");
    assert_eq!(
        stack.get(processed, &pack0).await.unwrap(),
        whole_packs[0],
        "pack 0 is the bytes its index describes"
    );
    let record = stack.jobs.get(&video_id).await.unwrap().unwrap();
    assert_eq!(record.usage, usage_before, "usage counted once per batch");
    assert_eq!(record.processed_frames, frames - 1);
}

/// A pack stored by a delivery that died before its count (here: written beforehand, from
/// edge maps made with other parameters, with one frame left out) is never overwritten: the
/// worker that then gets the batch counts the stored pack as it is, so the manifest's index
/// describes the bytes under the key, and the frame missing from it is listed as failed. The
/// worker reads the stored pack with its own role (`s3:GetObject` on `*/packs/*`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stored_pack_is_counted_as_stored_never_overwritten() {
    let mut stack = spawn_stack_with(StackOptions {
        dispatcher_config: DispatcherConfig {
            batch_size: 4,
            output_layout: OutputLayout::Packed,
            ..DispatcherConfig::default()
        },
        ..StackOptions::without_workers()
    })
    .await
    .unwrap();
    stack.version_processed_bucket().await.unwrap();
    let (video, frames) = video_bytes("stored.mp4", 64, 48, "8", 1.0).await.unwrap();
    let video_id = stack.upload("stored.mp4", video).await.unwrap();
    let id = video_id.to_string();
    let record = stack.wait_processing(&video_id).await.unwrap();
    let params = record.plan.as_ref().unwrap().params.clone();
    let captured = stack.captured_frames(&id).await.unwrap();
    assert_eq!(captured.len() as u64, frames);
    // Batch 0 is frames 0..4; the earlier delivery packed frames 0, 1 and 3, encoded at
    // another JPEG quality than the job's.
    let other = EdgeParams {
        quality: if params.quality > 50 { 20 } else { 90 },
        ..params.clone()
    };
    let mut tar = framefleet_worker::tar::Tar::new();
    for key in [&captured[0], &captured[1], &captured[3]] {
        let frame = stack
            .get(&stack.resources.frames_bucket, key)
            .await
            .unwrap();
        let edge_map = framefleet_edge::process(&frame, &other).unwrap();
        let name = output_key(&id, key, edge_map.format.extension());
        tar.append(name.rsplit('/').next().unwrap(), &edge_map.bytes)
            .unwrap();
    }
    let (stored, _) = tar.finish();
    let pack0 = format!("{id}/packs/000000.tar");
    let processed = &stack.resources.processed_bucket.clone();
    stack
        .clients
        .s3
        .put_object()
        .bucket(processed)
        .key(&pack0)
        .body(stored.clone().into())
        .send()
        .await
        .unwrap();

    stack.start_worker().await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.processed_frames, frames - 1);
    assert_eq!(record.failed_frames, 1);

    let versions = stack.processed_versions(&pack0).await.unwrap();
    assert_eq!(versions.len(), 1, "the stored pack was overwritten");
    assert_eq!(stack.get(processed, &pack0).await.unwrap(), stored);
    let manifest = stack.manifest(&id).await.unwrap();
    let packs: Vec<Pack> = serde_json::from_value(manifest["output"]["packs"].clone()).unwrap();
    let pack = packs.iter().find(|p| p.key == pack0).unwrap();
    assert_eq!(pack.frames.len(), 3, "{pack:?}");
    for frame in &pack.frames {
        let key = captured
            .iter()
            .find(|k| output_key(&id, k, "jpg").ends_with(&format!("/{}", frame.name)))
            .unwrap();
        let bytes = stack
            .get(&stack.resources.frames_bucket, key)
            .await
            .unwrap();
        let expected = framefleet_edge::process(&bytes, &other).unwrap();
        assert!(
            stored[frame.offset as usize..frame.end() as usize] == expected.bytes[..],
            "{} points at its bytes in the stored pack",
            frame.name
        );
    }
    let failed = manifest["failed_frames"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["key"], captured[2].as_str());
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("earlier delivery"),
        "{failed:?}"
    );
}

/// JPEG frames `0..count` of ffmpeg's `testsrc2` (each one different), as MediaConvert's frame
/// capture writes them.
async fn jpeg_frames(count: u32) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=64x48:rate=8", "-frames:v"])
        .arg(count.to_string())
        .args(["-start_number", "0"])
        .arg(dir.path().join("f.%07d.jpg"))
        .status()
        .await
        .expect("cannot run ffmpeg: install it");
    assert!(status.success());
    (0..count)
        .map(|i| std::fs::read(dir.path().join(format!("f.{i:07}.jpg"))).unwrap())
        .collect()
}

/// A segment's batch (segmented capture): its keys are the segment's own frames,
/// `<id>/s0001/clip.0000000.jpg` …, numbered from 0, and it carries `first_index = 500`. In
/// both layouts the worker names each edge map by the frame's global index,
/// `clip.0000500.jpg` …, exactly as a batch of the same JPEGs captured unsegmented as frames
/// 500.. names them, with the same bytes: the processed bucket of a segmented run equals an
/// unsegmented run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_segments_batch_names_its_edge_maps_by_global_index_in_both_layouts() {
    use framefleet_core::jobs::{BatchPlan, JobRecord};
    use framefleet_core::message::FRAME_BATCH_VERSION;
    use framefleet_core::video::VideoId;
    use framefleet_worker::batch::BatchProcessor;

    let stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let frames_bucket = stack.resources.frames_bucket.clone();
    let processed = stack.resources.processed_bucket.clone();
    let jpegs = jpeg_frames(7).await;
    let n = jpegs.len() as u64;
    let processor =
        BatchProcessor::new(stack.clients.s3.clone(), stack.jobs.clone(), &processed, 2);
    for layout in [OutputLayout::Objects, OutputLayout::Packed] {
        let plan = BatchPlan {
            batch_size: 50,
            params: EdgeParams::default(),
            last_frame: None,
            layout,
        };
        // One job captured in segments, one captured whole: one batch of 7 frames each.
        let mut batches = Vec::new();
        for (name, segmented) in [("segmented", true), ("whole", false)] {
            let key = format!("{name}-{layout:?}.mp4");
            let id = VideoId::derive("in", &key, "e");
            stack
                .jobs
                .register(&JobRecord::new(id.clone(), "in", &key, "e", 1))
                .await
                .unwrap();
            stack
                .jobs
                .start_processing(&id, "mc-1", n, 1, &plan)
                .await
                .unwrap();
            let mut frame_keys = Vec::new();
            for (i, jpeg) in jpegs.iter().enumerate() {
                let frame_key = if segmented {
                    format!("{id}/s0001/clip.{i:07}.jpg")
                } else {
                    format!("{id}/clip.{:07}.jpg", 500 + i)
                };
                stack
                    .clients
                    .s3
                    .put_object()
                    .bucket(&frames_bucket)
                    .key(&frame_key)
                    .body(jpeg.clone().into())
                    .send()
                    .await
                    .unwrap();
                frame_keys.push(frame_key);
            }
            let batch = FrameBatch {
                version: FRAME_BATCH_VERSION,
                video_id: id.clone(),
                batch_index: 0,
                frames_bucket: frames_bucket.clone(),
                frame_keys,
                params: plan.params.clone(),
                layout,
                first_index: segmented.then_some(500),
            };
            // What the worker receives: the body, parsed.
            let batch = FrameBatch::parse(&batch.to_body()).unwrap();
            let report = processor.process(&batch, false).await.unwrap();
            assert_eq!(report.outcome.processed, n, "{name} {layout:?}: {report:?}");
            assert!(report.completed_job, "{name} {layout:?}: {report:?}");
            batches.push(id);
        }
        let [segmented, whole] = [&batches[0], &batches[1]];

        // Edge map names (objects) or pack members (packed), relative to the job's prefix.
        let expected: Vec<String> = (500..500 + n).map(|g| format!("clip.{g:07}.jpg")).collect();
        let outputs = |id: &VideoId| {
            let stack = &stack;
            let processed = &processed;
            let id = id.to_string();
            async move {
                let mut out = BTreeMap::new();
                match layout {
                    OutputLayout::Objects => {
                        for key in stack.list(processed, &format!("{id}/")).await.unwrap() {
                            if key.ends_with("/manifest.json") {
                                continue;
                            }
                            let bytes = stack.get(processed, &key).await.unwrap();
                            out.insert(key[id.len() + 1..].to_string(), bytes);
                        }
                    }
                    OutputLayout::Packed => {
                        let manifest = stack.manifest(&id).await.unwrap();
                        let packs: Vec<Pack> =
                            serde_json::from_value(manifest["output"]["packs"].clone()).unwrap();
                        assert_eq!(packs.len(), 1, "{manifest:#}");
                        assert_eq!(packs[0].key, format!("{id}/packs/000000.tar"));
                        let tar = stack.get(processed, &packs[0].key).await.unwrap();
                        for frame in &packs[0].frames {
                            let member = tar[frame.offset as usize..frame.end() as usize].to_vec();
                            assert!(out.insert(frame.name.clone(), member).is_none());
                        }
                    }
                }
                out
            }
        };
        let from_segment = outputs(segmented).await;
        let from_whole = outputs(whole).await;
        assert_eq!(
            from_segment.keys().cloned().collect::<Vec<_>>(),
            expected,
            "{layout:?}: a segment's edge maps are named by global index"
        );
        assert_eq!(
            from_whole.keys().cloned().collect::<Vec<_>>(),
            expected,
            "{layout:?}: the unsegmented batch keeps its frames' names"
        );
        for (name, bytes) in &from_segment {
            assert!(
                *bytes == from_whole[name],
                "{layout:?}: {name} differs between the segmented and the unsegmented run"
            );
        }
        // And each is the kernel's edge map of the frame with that global index.
        for (i, jpeg) in jpegs.iter().enumerate() {
            let offline = framefleet_edge::process(jpeg, &EdgeParams::default()).unwrap();
            assert!(
                from_segment[&expected[i]] == offline.bytes,
                "{}",
                expected[i]
            );
        }
        // The manifest lists the segment's frames (the frames bucket's keys) as counted.
        let manifest = stack.manifest(segmented.as_str()).await.unwrap();
        assert_eq!(manifest["counts"]["processed"], n, "{manifest:#}");
    }
}
