"""`gda dataset SRC DEST`: make a training dataset from a folder or zip of arbitrary images."""

import click

from stylegan2_ada.dataset_tool import CHANNEL_MODES, FILTERS, SQUARE_MODES, convert_dataset


@click.command()
@click.argument('src', metavar='SRC')
@click.argument('dest', metavar='DEST')
@click.option('--resolution', help='Output resolution in pixels (a power of two)', type=click.IntRange(min=4), required=True, metavar='R')
@click.option('--square',     help='Make images square: crop (center) or pad', type=click.Choice(SQUARE_MODES), default='crop', show_default=True)
@click.option('--filter',     help='Resampling filter for resizing', type=click.Choice(list(FILTERS)), default='lanczos', show_default=True)
@click.option('--background', help='Colour behind transparency and padding', metavar='COLOR', default='white', show_default=True)
@click.option('--channels',   help='Output channels (auto: gray only if every image is)', type=click.Choice(CHANNEL_MODES), default='auto', show_default=True)
@click.option('--max-images', help='Convert at most this many images', type=click.IntRange(min=1), metavar='N')
@click.option('--overwrite',  help='Replace DEST.zip if it exists (it is refused otherwise)', is_flag=True)
def dataset(src, dest, resolution, square, filter, background, channels, max_images, overwrite):
    """Convert the images in SRC (folder or zip) into a training dataset DEST (.zip or new folder).

    \b
    Example:
      gda dataset ~/photos faces.zip --resolution 256 --square pad --background black
    """
    report = convert_dataset(src, dest, resolution, square=square, resize_filter=filter, background=background,
                             channels=channels, max_images=max_images, overwrite=overwrite)
    for line in report.lines():
        click.echo(line)
