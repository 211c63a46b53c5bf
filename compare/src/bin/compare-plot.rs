//! `compare-plot`: draws consume TPS over time, one line per client, from the CSV files
//! `scripts/compare.sh` writes out of the consumers' `Consume TPS:` status lines.
//!
//! ```text
//! compare-plot --out consume-tps.png [--title TEXT] LABEL=FILE.csv [LABEL=FILE.csv ...]
//! ```
//!
//! Each CSV file has the header `t_s,tps`, a first row `0,0` for the consumer's start, then one
//! row per status line: the seconds since the start and the messages consumed per second over
//! the interval ending then. Each rate is drawn as a step over its own interval, the way it
//! was measured. The first series is drawn widest, so that it shows where the next one covers
//! it.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "compare-plot",
    about = "Consume TPS over time from compare.sh's CSV files, as a PNG"
)]
struct Cli {
    /// The PNG file to write.
    #[arg(long)]
    out: PathBuf,
    /// The chart's title.
    #[arg(long, default_value = "consume TPS over time, same backlog")]
    title: String,
    /// A line of the chart: its legend, `=`, and its CSV file (`t_s,tps`).
    #[arg(required = true, value_name = "LABEL=FILE")]
    series: Vec<String>,
}

/// A line of the chart: its legend and its points (seconds, messages per second).
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = cli
        .series
        .iter()
        .map(|s| read_series(s))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|series| plot(&series, &cli.title, &cli.out));
    match result {
        Ok(()) => {
            println!("PNG: {}", cli.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("compare-plot: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_series(arg: &str) -> Result<Series, String> {
    let (label, path) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?}: expected LABEL=FILE"))?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut points = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line
            .split_once(',')
            .and_then(|(t, v)| Some((t.trim().parse().ok()?, v.trim().parse().ok()?)));
        points.push(parsed.ok_or_else(|| format!("{path}:{}: not `t_s,tps`: {line:?}", n + 1))?);
    }
    if points.is_empty() {
        return Err(format!("{path}: no rows"));
    }
    Ok(Series {
        label: label.to_owned(),
        points,
    })
}

fn plot(series: &[Series], title: &str, path: &Path) -> Result<(), String> {
    draw(series, title, path).map_err(|e| format!("{}: {e}", path.display()))
}

fn draw(series: &[Series], title: &str, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    // Text is drawn with an embedded font: no system font library or font file is needed.
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        epaint_default_fonts::UBUNTU_LIGHT,
    )
    .map_err(|_| "the embedded font did not load")?;

    let (w, h) = (1200u32, 700u32);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    let xmax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.15;
    let colors = [RED, BLUE, BLACK, MAGENTA, GREEN, CYAN];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(84)
            .build_cartesian_2d(0f64..xmax * 1.02, 0f64..ymax)?;
        chart
            .configure_mesh()
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("seconds since the consumer started")
            .y_desc("messages consumed per second")
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            let width = if i == 0 { 4 } else { 2 };
            // A rate holds over the interval that ends at its time: from the previous row's.
            let steps = s.points.windows(2).flat_map(|w| [(w[0].0, w[1].1), w[1]]);
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().take(1).copied().chain(steps),
                    color.stroke_width(width),
                ))?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 17))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    let file = BufWriter::new(File::create(path)?);
    let mut encoder = png::Encoder::new(file, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(())
}
